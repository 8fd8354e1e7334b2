// Command gocheck cross-checks the archive's Merkle log output with Go's
// reference implementations (golang.org/x/mod/sumdb/note and .../tlog).
//
// It reads one JSON file written by tests/unit/ledger/test_gocheck.py and
// verifies the signed checkpoint (C2SP signed-note + tlog-checkpoint), the
// root hash recomputed from the leaf data, every inclusion proof and every
// consistency proof. Exit status 0 means everything verified, 1 otherwise.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"tree_size"`
	Root     string   `json:"root"`
	Proof    []string `json:"proof"`
}

type consistency struct {
	OldSize int64    `json:"old_size"`
	NewSize int64    `json:"new_size"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
	Proof   []string `json:"proof"`
}

type input struct {
	VerifierKey string        `json:"verifier_key"`
	Checkpoint  string        `json:"checkpoint"`
	Leaves      []string      `json:"leaves"`
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
}

func b64hash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return h, err
	}
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("hash has %d bytes", len(b))
	}
	copy(h[:], b)
	return h, nil
}

func proof(items []string) (tlog.TreeProof, error) {
	p := make(tlog.TreeProof, 0, len(items))
	for _, s := range items {
		h, err := b64hash(s)
		if err != nil {
			return nil, err
		}
		p = append(p, h)
	}
	return p, nil
}

// memHashes is an in-memory tlog.HashReader over the stored hash layout.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("hash index %d out of range", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var in input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("parse input: %w", err)
	}

	verifier, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		return fmt.Errorf("verifier key: %w", err)
	}
	n, err := note.Open([]byte(in.Checkpoint), note.VerifierList(verifier))
	if err != nil {
		return fmt.Errorf("open note: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		return fmt.Errorf("checkpoint body too short")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return fmt.Errorf("checkpoint size: %w", err)
	}
	root, err := b64hash(lines[2])
	if err != nil {
		return fmt.Errorf("checkpoint root: %w", err)
	}
	if size != int64(len(in.Leaves)) {
		return fmt.Errorf("checkpoint size %d but %d leaves", size, len(in.Leaves))
	}

	// Recompute the tree from the leaf data with tlog's own storage layout.
	var stored memHashes
	for i, l := range in.Leaves {
		data, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			return err
		}
		hs, err := tlog.StoredHashes(int64(i), data, stored)
		if err != nil {
			return err
		}
		stored = append(stored, hs...)
	}
	got, err := tlog.TreeHash(size, stored)
	if err != nil {
		return err
	}
	if got != root {
		return fmt.Errorf("root mismatch: checkpoint %s, recomputed %s", root, got)
	}

	for _, c := range in.Inclusion {
		r, err := b64hash(c.Root)
		if err != nil {
			return err
		}
		p, err := proof(c.Proof)
		if err != nil {
			return err
		}
		data, err := base64.StdEncoding.DecodeString(in.Leaves[c.Index])
		if err != nil {
			return err
		}
		rp := tlog.RecordProof(p)
		if err := tlog.CheckRecord(rp, c.TreeSize, r, c.Index, tlog.RecordHash(data)); err != nil {
			return fmt.Errorf("inclusion %d in %d: %w", c.Index, c.TreeSize, err)
		}
	}
	for _, c := range in.Consistency {
		r1, err := b64hash(c.OldRoot)
		if err != nil {
			return err
		}
		r2, err := b64hash(c.NewRoot)
		if err != nil {
			return err
		}
		p, err := proof(c.Proof)
		if err != nil {
			return err
		}
		if err := tlog.CheckTree(p, c.NewSize, r2, c.OldSize, r1); err != nil {
			return fmt.Errorf("consistency %d->%d: %w", c.OldSize, c.NewSize, err)
		}
	}
	fmt.Printf("ok: note by %s, size %d, %d inclusion, %d consistency proofs\n",
		n.Sigs[0].Name, size, len(in.Inclusion), len(in.Consistency))
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gocheck <input.json>")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

// Command gocheck cross-checks the archive's Merkle log output with Go's
// reference implementations (golang.org/x/mod/sumdb/note and .../tlog).
//
// It reads one JSON file written by tests/unit/ledger/test_gocheck.py and
// verifies the signed checkpoint (C2SP signed-note + tlog-checkpoint), the
// root hash recomputed from the leaf data, every inclusion proof and every
// consistency proof. Exit status 0 means everything verified, 1 otherwise.
//
// Second mode, for export packages (docs/export.md): "gocheck manifest
// manifest.json KEY [N]" takes the package's signed checkpoint and (leaf index,
// entry, proof) triples instead of the whole log: it verifies the checkpoint under
// KEY (a C2SP verifier key), every N-th record's inclusion proof (N=1: all), the
// export's own leaf in the later checkpoint and the consistency proof between them.
//
// Third mode, for the whole package: "gocheck package export.zip KEY [N]" (pkg.go)
// also checks every file's SHA-256 and size, each record's bytes against its log
// entry, the raw batches, and the four digests the export leaf names, recomputed
// with an RFC 8785 canonicaliser of its own (jcs.go).
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

type signedLog struct {
	Checkpoint string `json:"checkpoint"`
}

type leafProof struct {
	LeafIndex int64    `json:"leaf_index"`
	Entry     string   `json:"entry"`
	Proof     []string `json:"proof"`
}

type exportManifest struct {
	Log     signedLog   `json:"log"`
	Records []leafProof `json:"records"`
	Export  struct {
		leafProof
		Checkpoint  signedLog `json:"checkpoint"`
		Consistency []string  `json:"consistency"`
	} `json:"export"`
}

// openCheckpoint verifies a signed checkpoint and returns its size and root.
func openCheckpoint(text string, verifier note.Verifier) (int64, tlog.Hash, error) {
	var root tlog.Hash
	n, err := note.Open([]byte(text), note.VerifierList(verifier))
	if err != nil {
		return 0, root, fmt.Errorf("open note: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		return 0, root, fmt.Errorf("checkpoint body too short")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return 0, root, fmt.Errorf("checkpoint size: %w", err)
	}
	root, err = b64hash(lines[2])
	return size, root, err
}

func checkLeaf(l leafProof, size int64, root tlog.Hash) error {
	entry, err := base64.StdEncoding.DecodeString(l.Entry)
	if err != nil {
		return err
	}
	p, err := proof(l.Proof)
	if err != nil {
		return err
	}
	// The leaf is SHA-256(0x00 || entry): tlog.RecordHash, RFC 6962.
	if err := tlog.CheckRecord(tlog.RecordProof(p), size, root, l.LeafIndex, tlog.RecordHash(entry)); err != nil {
		return fmt.Errorf("leaf %d in %d: %w", l.LeafIndex, size, err)
	}
	return nil
}

func runManifest(path, key string, every int) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m exportManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("parse manifest: %w", err)
	}
	verifier, err := note.NewVerifier(key)
	if err != nil {
		return fmt.Errorf("verifier key: %w", err)
	}
	size, root, err := openCheckpoint(m.Log.Checkpoint, verifier)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	checked := 0
	for i, r := range m.Records {
		if i%every != 0 {
			continue
		}
		if err := checkLeaf(r, size, root); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		checked++
	}
	size2, root2, err := openCheckpoint(m.Export.Checkpoint.Checkpoint, verifier)
	if err != nil {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	if err := checkLeaf(m.Export.leafProof, size2, root2); err != nil {
		return fmt.Errorf("export leaf: %w", err)
	}
	cp, err := proof(m.Export.Consistency)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(cp, size2, root2, size, root); err != nil {
		return fmt.Errorf("consistency %d->%d: %w", size, size2, err)
	}
	fmt.Printf("ok: checkpoint %d, %d of %d record proofs, export leaf %d in %d, consistent\n",
		size, checked, len(m.Records), m.Export.LeafIndex, size2)
	return nil
}

func parseEvery(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("every must be a positive integer")
	}
	return n, nil
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "jcs" { // canonical form of a JSON file, for tests
		raw, err := os.ReadFile(os.Args[2])
		var v any
		if err == nil {
			v, err = parseJSON(raw)
		}
		var out []byte
		if err == nil {
			out, err = canonical(v)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			os.Exit(1)
		}
		os.Stdout.Write(out)
		return
	}
	if (len(os.Args) == 4 || len(os.Args) == 5) && os.Args[1] == "package" {
		mainPackage(os.Args[2:])
		return
	}
	if len(os.Args) >= 4 && os.Args[1] == "manifest" {
		every := 1
		if len(os.Args) == 5 {
			n, err := parseEvery(os.Args[4])
			if err != nil {
				fmt.Fprintln(os.Stderr, "usage: gocheck manifest <manifest.json> <vkey> [every]")
				os.Exit(2)
			}
			every = n
		}
		if err := runManifest(os.Args[2], os.Args[3], every); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gocheck <input.json> | manifest <manifest.json> <vkey> [every]"+
			" | package <export.zip> <vkey> [every]")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

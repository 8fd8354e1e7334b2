package main

// Third mode, "gocheck package export.zip KEY [N]": the whole export package
// (docs/export.md), checked with Go's standard library and golang.org/x/mod's
// note and tlog only, nothing of the archive's code:
//
//   - every file listed in manifest.json is in the zip with its SHA-256 and size,
//     and the zip holds nothing else (but manifest.json);
//   - every record's stored bytes hash to its manifest line and to the sha256 its
//     log entry names (the entry also names its object key and version, and is
//     canonical JSON), and every N-th record's leaf SHA-256(0x00 ‖ entry) is
//     included in the package's checkpoint (N=1, the default: all);
//   - each raw batch hashes to what its records name, each decrypted slot to the
//     batch header's SHA-256 for it;
//   - the checkpoint is a signed note under KEY, its origin, size and root are the
//     manifest's;
//   - the load file (Concordance DAT) names exactly the package's records and
//     attachments with their Bates numbers;
//   - the export leaf names this package: records_sha256, files_sha256,
//     raw_batches_sha256 and head_sha256 recomputed from the manifest (RFC 8785,
//     jcs.go), the record count and the case; it is included in the later
//     checkpoint (signed under KEY), which is consistent with the first.
//
// Every failure is printed, one line each ("FAIL <what>: <why>"), then exit 1.

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	exportFormat = "wa-archiver-export/1"
	// A member read whole may inflate to at most maxRatio times its compressed
	// size (or smallMember): a zip bomb is refused unread. Records are capped.
	maxRatio       = 100
	smallMember    = 1 << 20
	maxRecordBytes = 64 << 20
	rawMagic       = "WARAW1\n"
)

type pkgFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

type pkgLog struct {
	Origin     string `json:"origin"`
	Checkpoint string `json:"checkpoint"`
	TreeSize   int64  `json:"tree_size"`
	RootHash   string `json:"root_hash"`
}

type pkgAttachment struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Bates  string `json:"bates"`
}

type pkgRecord struct {
	RecordID    string          `json:"record_id"`
	ObjectKey   string          `json:"object_key"`
	VersionID   string          `json:"version_id"`
	SHA256      string          `json:"sha256"`
	Entry       string          `json:"entry"`
	LeafIndex   int64           `json:"leaf_index"`
	Proof       []string        `json:"proof"`
	Native      string          `json:"native"`
	Bates       string          `json:"bates"`
	Attachments []pkgAttachment `json:"attachments"`
}

type pkgSlot struct {
	Index int    `json:"index"`
	Path  string `json:"path"`
}

type pkgBatch struct {
	Key       string    `json:"key"`
	VersionID string    `json:"version_id"`
	Path      string    `json:"path"`
	Slots     []pkgSlot `json:"slots"`
}

type pkgManifest struct {
	Format string `json:"format"`
	Case   struct {
		ID string `json:"id"`
	} `json:"case"`
	Log    pkgLog `json:"log"`
	Export struct {
		Entry         string   `json:"entry"`
		LeafIndex     int64    `json:"leaf_index"`
		Proof         []string `json:"proof"`
		RecordsSHA256 string   `json:"records_sha256"`
		Checkpoint    pkgLog   `json:"checkpoint"`
		Consistency   []string `json:"consistency"`
	} `json:"export"`
	Files      []pkgFile   `json:"files"`
	RawBatches []pkgBatch  `json:"raw_batches"`
	Records    []pkgRecord `json:"records"`
}

// checker collects named failures; one bad file does not hide the next.
type checker struct {
	fails []string
}

func (c *checker) fail(what, format string, args ...any) {
	c.fails = append(c.fails, what+": "+fmt.Sprintf(format, args...))
}

// readWhole reads a member whole unless it would inflate past limit or maxRatio
// times its compressed size (archive/zip never reads past the declared size).
func readWhole(f *zip.File, limit uint64) ([]byte, error) {
	ratio := max(uint64(smallMember), maxRatio*f.CompressedSize64)
	if limit == 0 || ratio < limit {
		limit = ratio
	}
	if f.UncompressedSize64 > limit {
		return nil, fmt.Errorf("would inflate to %d bytes (%d compressed): refused",
			f.UncompressedSize64, f.CompressedSize64)
	}
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func hashMember(f *zip.File) (string, int64, error) {
	r, err := f.Open()
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r) // streams: memory flat whatever the member's size
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// listDigest: SHA-256 over each element's canonical JSON followed by "\n".
func listDigest(list any) (string, error) {
	items, ok := list.([]any)
	if !ok {
		return "", fmt.Errorf("not a JSON array")
	}
	h := sha256.New()
	for _, it := range items {
		b, err := canonical(it)
		if err != nil {
			return "", err
		}
		h.Write(b)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// headDigest: SHA-256 of the canonical JSON of the manifest without its export,
// files, raw_batches and records members.
func headDigest(m map[string]any) (string, error) {
	head := map[string]any{}
	for k, v := range m {
		switch k {
		case "export", "files", "raw_batches", "records":
		default:
			head[k] = v
		}
	}
	b, err := canonical(head)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// parseEntry decodes a log entry and checks its bytes are canonical JSON.
func parseEntry(b64 string) ([]byte, map[string]any, error) {
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, nil, fmt.Errorf("entry is not base64: %w", err)
	}
	v, err := parseJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("entry is not JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok || fmt.Sprint(obj["v"]) != "1" {
		return nil, nil, fmt.Errorf("entry is not a version-1 entry object")
	}
	canon, err := canonical(v)
	if err != nil || string(canon) != string(data) {
		return nil, nil, fmt.Errorf("entry bytes are not RFC 8785 canonical")
	}
	return data, obj, nil
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// verifyCheckpoint opens a signed note under the pinned key and checks its origin,
// size and root against the manifest's copy of them.
func verifyCheckpoint(l pkgLog, origin string, v note.Verifier) (int64, tlog.Hash, error) {
	size, root, err := openCheckpoint(l.Checkpoint, v)
	if err != nil {
		return 0, root, err
	}
	if first, _, _ := strings.Cut(l.Checkpoint, "\n"); first != origin {
		return 0, root, fmt.Errorf("checkpoint origin %q is not the manifest's %q", first, origin)
	}
	if size != l.TreeSize || base64.StdEncoding.EncodeToString(root[:]) != l.RootHash {
		return 0, root, fmt.Errorf("manifest's tree size / root differ from the signed checkpoint")
	}
	return size, root, nil
}

func unsafeName(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return true
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	parts := strings.Split(name, "/")
	if strings.Contains(parts[0], ":") {
		return true
	}
	for i, p := range parts {
		if p == "." || p == ".." || (p == "" && i < len(parts)-1) {
			return true
		}
	}
	return false
}

func runPackage(zipPath, key string, every int) ([]string, string, error) {
	verifier, err := note.NewVerifier(key)
	if err != nil {
		return nil, "", fmt.Errorf("verifier key: %w", err)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return nil, "", fmt.Errorf("package: not a readable zip: %w", err)
	}
	defer zr.Close()
	c := &checker{}
	members := map[string]*zip.File{}
	for _, f := range zr.File {
		if _, dup := members[f.Name]; dup {
			c.fail(f.Name, "in the zip twice")
		}
		if unsafeName(f.Name) {
			c.fail(fmt.Sprintf("%q", f.Name), "unsafe member name")
		}
		members[f.Name] = f
	}
	mf, ok := members["manifest.json"]
	if !ok {
		return nil, "", fmt.Errorf("manifest.json: missing")
	}
	raw, err := readWhole(mf, 0)
	if err != nil {
		return nil, "", fmt.Errorf("manifest.json: %w", err)
	}
	generic, err := parseJSON(raw)
	if err != nil {
		return nil, "", fmt.Errorf("manifest.json: %w", err)
	}
	gm, ok := generic.(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("manifest.json: not an object")
	}
	var m pkgManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", fmt.Errorf("manifest.json: %w", err)
	}
	if m.Format != exportFormat {
		return nil, "", fmt.Errorf("manifest.json: not a %s manifest", exportFormat)
	}

	// 1. The checkpoint, under the pinned key.
	size, root, err := verifyCheckpoint(m.Log, m.Log.Origin, verifier)
	cpOK := err == nil
	if !cpOK {
		c.fail("checkpoint", "%v", err)
	}

	// 2. Every listed file, and nothing unlisted.
	listed := map[string]string{}
	for _, f := range m.Files {
		listed[f.Path] = f.SHA256
		zf, ok := members[f.Path]
		if !ok {
			c.fail(f.Path, "listed in the manifest but missing")
			continue
		}
		sum, n, err := hashMember(zf)
		switch {
		case err != nil:
			c.fail(f.Path, "unreadable: %v", err)
		case sum != f.SHA256:
			c.fail(f.Path, "SHA-256 %s differs from the manifest's %s", sum, f.SHA256)
		case n != f.Size:
			c.fail(f.Path, "size %d differs from the manifest's %d", n, f.Size)
		}
	}
	for name := range members {
		if _, ok := listed[name]; !ok && name != "manifest.json" {
			c.fail(name, "in the zip but not listed in the manifest")
		}
	}

	// 3. Records: bytes against entry, leaf against checkpoint.
	rawRefs := map[string]string{} // key \x00 version -> sha256 the record names
	proofs := 0
	for i, r := range m.Records {
		if r.Native != "natives/records/"+r.RecordID+".json" {
			c.fail(r.RecordID, "native path %s is not the record's", r.Native)
			continue
		}
		zf, ok := members[r.Native]
		if !ok {
			c.fail(r.RecordID, "stored bytes missing (%s)", r.Native)
			continue
		}
		data, err := readWhole(zf, maxRecordBytes)
		if err != nil {
			c.fail(r.RecordID, "stored bytes unreadable: %v", err)
			continue
		}
		sum := sha256.Sum256(data)
		sha := hex.EncodeToString(sum[:])
		if sha != r.SHA256 || listed[r.Native] != sha {
			c.fail(r.RecordID, "record bytes do not match the manifest's record hash")
		}
		entry, fields, err := parseEntry(r.Entry)
		if err != nil {
			c.fail(r.RecordID, "log entry: %v", err)
			continue
		}
		if str(fields, "kind") != "record" {
			c.fail(r.RecordID, "log entry is a %q entry, not a record entry", str(fields, "kind"))
		}
		if str(fields, "sha256") != sha {
			c.fail(r.RecordID, "record bytes do not hash to the log entry's sha256")
		}
		if str(fields, "key") != r.ObjectKey || str(fields, "version_id") != r.VersionID {
			c.fail(r.RecordID, "log entry names another object key or version")
		}
		if s, ok := fields["size"]; ok && fmt.Sprint(s) != fmt.Sprint(len(data)) {
			c.fail(r.RecordID, "record size differs from the log entry's")
		}
		var header struct {
			RecordID string `json:"record_id"`
			Raw      *struct {
				Key       string `json:"key"`
				VersionID string `json:"version_id"`
				SHA256    string `json:"sha256"`
			} `json:"raw"`
		}
		if err := json.Unmarshal(data, &header); err != nil {
			c.fail(r.RecordID, "stored record is not JSON")
		} else {
			if header.RecordID != r.RecordID {
				c.fail(r.RecordID, "the stored record is another record")
			}
			if header.Raw != nil && header.Raw.Key != "" {
				rawRefs[header.Raw.Key+"\x00"+header.Raw.VersionID] = header.Raw.SHA256
			}
		}
		for _, a := range r.Attachments {
			if listed[a.Path] != a.SHA256 {
				c.fail(a.Path, "attachment hash differs from the file list")
			}
		}
		if cpOK && i%every == 0 {
			p, err := proof(r.Proof)
			if err == nil {
				err = tlog.CheckRecord(tlog.RecordProof(p), size, root, r.LeafIndex, tlog.RecordHash(entry))
			}
			if err != nil {
				c.fail(r.RecordID, "inclusion of leaf %d in %d: %v", r.LeafIndex, size, err)
			}
			proofs++
		}
	}

	// 4. Raw batches: against their records, slots against the batch header.
	for _, b := range m.RawBatches {
		zf, ok := members[b.Path]
		if !ok {
			c.fail(b.Path, "raw batch missing")
			continue
		}
		data, err := readWhole(zf, 0)
		if err != nil {
			c.fail(b.Path, "raw batch unreadable: %v", err)
			continue
		}
		sum := sha256.Sum256(data)
		named, ok := rawRefs[b.Key+"\x00"+b.VersionID]
		if !ok {
			c.fail(b.Path, "no record of the package names this raw batch")
		} else if named != hex.EncodeToString(sum[:]) {
			c.fail(b.Path, "raw batch bytes differ from what its records name")
		}
		slots, err := slotHashes(data)
		if err != nil {
			c.fail(b.Path, "%v", err)
			continue
		}
		for _, s := range b.Slots {
			want, ok := slots[s.Index]
			if !ok || listed[s.Path] != want {
				c.fail(s.Path, "decrypted slot does not match the batch header's SHA-256")
			}
		}
	}

	// 5. The export leaf binds this package, in a later checkpoint, consistent.
	exportLeaf(c, m, gm, verifier, cpOK, size, root)

	// 6. The load file names exactly the package's records and attachments.
	checkLoadfile(c, members["loadfile.dat"], m.Records)

	summary := fmt.Sprintf("ok: package: %d files, %d records (%d of %d inclusion proofs) in "+
		"checkpoint %d, %d raw batches, export leaf %d in %d binds records, files, raw "+
		"batches and head, consistent; load file agrees", len(m.Files), len(m.Records), proofs, len(m.Records),
		size, len(m.RawBatches), m.Export.LeafIndex, m.Export.Checkpoint.TreeSize)
	return c.fails, summary, nil
}

func exportLeaf(c *checker, m pkgManifest, gm map[string]any, verifier note.Verifier,
	cpOK bool, size int64, root tlog.Hash) {
	want := map[string]string{}
	var err error
	if want["records_sha256"], err = listDigest(gm["records"]); err != nil {
		c.fail("export", "records: %v", err)
	}
	if want["files_sha256"], err = listDigest(gm["files"]); err != nil {
		c.fail("export", "files: %v", err)
	}
	if want["raw_batches_sha256"], err = listDigest(gm["raw_batches"]); err != nil {
		c.fail("export", "raw_batches: %v", err)
	}
	if want["head_sha256"], err = headDigest(gm); err != nil {
		c.fail("export", "head: %v", err)
	}
	if m.Export.RecordsSHA256 != want["records_sha256"] {
		c.fail("export", "records_sha256 is not the digest of the manifest's record list")
	}
	entry, fields, err := parseEntry(m.Export.Entry)
	if err != nil {
		c.fail("export", "export leaf: %v", err)
		return
	}
	if str(fields, "kind") != "export" {
		c.fail("export", "the export leaf is a %q entry", str(fields, "kind"))
	}
	if str(fields, "case") != m.Case.ID {
		c.fail("export", "the logged export names another case")
	}
	if fmt.Sprint(fields["records"]) != fmt.Sprint(len(m.Records)) {
		c.fail("export", "the logged export names another record count")
	}
	names := map[string]string{
		"records_sha256":     "record list",
		"files_sha256":       "file list",
		"raw_batches_sha256": "raw batch list",
		"head_sha256":        "manifest head",
	}
	for _, k := range []string{"records_sha256", "files_sha256", "raw_batches_sha256", "head_sha256"} {
		got, ok := fields[k].(string)
		switch {
		case !ok:
			c.fail("export", "the logged export does not name %s (its %s is unproven)", k, names[k])
		case got != want[k]:
			c.fail("export", "the logged export names another %s (%s %s, recomputed %s)",
				names[k], k, got, want[k])
		}
	}
	size2, root2, err := verifyCheckpoint(m.Export.Checkpoint, m.Log.Origin, verifier)
	if err != nil {
		c.fail("export checkpoint", "%v", err)
		return
	}
	p, err := proof(m.Export.Proof)
	if err == nil {
		err = tlog.CheckRecord(tlog.RecordProof(p), size2, root2, m.Export.LeafIndex, tlog.RecordHash(entry))
	}
	if err != nil {
		c.fail("export", "export leaf %d in %d: %v", m.Export.LeafIndex, size2, err)
	}
	if !cpOK {
		return
	}
	cp, err := proof(m.Export.Consistency)
	if err == nil {
		err = tlog.CheckTree(cp, size2, root2, size, root)
	}
	if err != nil {
		c.fail("export", "consistency %d->%d: %v", size, size2, err)
	}
}

// slotHashes reads a raw capture batch's header (docs/formats.md): "WARAW1\n",
// a u32 big-endian header length, the JSON header naming each slot's SHA-256.
func slotHashes(data []byte) (map[int]string, error) {
	start := len(rawMagic) + 4
	if len(data) < start || string(data[:len(rawMagic)]) != rawMagic {
		return nil, fmt.Errorf("not a raw capture batch")
	}
	n := int(binary.BigEndian.Uint32(data[len(rawMagic):start]))
	if n > len(data)-start {
		return nil, fmt.Errorf("raw batch header length %d past the end", n)
	}
	var header struct {
		Deliveries []struct {
			I      int    `json:"i"`
			SHA256 string `json:"sha256"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(data[start:start+n], &header); err != nil {
		return nil, fmt.Errorf("raw batch header unreadable: %w", err)
	}
	out := map[int]string{}
	for _, d := range header.Deliveries {
		out[d.I] = d.SHA256
	}
	return out, nil
}

func mainPackage(args []string) {
	every := 1
	if len(args) == 3 {
		var err error
		every, err = parseEvery(args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "usage: gocheck package <export.zip> <vkey> [every]")
			os.Exit(2)
		}
	}
	fails, summary, err := runPackage(args[0], args[1], every)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL", err)
		os.Exit(1)
	}
	if len(fails) > 0 {
		for _, f := range fails {
			fmt.Fprintln(os.Stderr, "FAIL", f)
		}
		fmt.Fprintf(os.Stderr, "FAILED (%d)\n", len(fails))
		os.Exit(1)
	}
	fmt.Println(summary)
}

// checkLoadfile parses the Concordance DAT (docs/export.md "Load file": UTF-8 BOM,
// CRLF rows, þ around every field, DC4 between fields) and compares its record
// and attachment rows with the manifest.
func checkLoadfile(c *checker, f *zip.File, records []pkgRecord) {
	const name = "loadfile.dat"
	if f == nil {
		c.fail(name, "missing")
		return
	}
	data, err := readWhole(f, 0)
	if err != nil {
		c.fail(name, "unreadable: %v", err)
		return
	}
	text, ok := strings.CutPrefix(string(data), "\ufeff")
	if !ok || !utf8.ValidString(text) {
		c.fail(name, "not UTF-8 with a byte-order mark")
		return
	}
	lines := strings.Split(strings.TrimSuffix(text, "\r\n"), "\r\n")
	fields := func(line string) ([]string, bool) {
		var out []string
		for _, p := range strings.Split(line, "\x14") {
			v, ok1 := strings.CutPrefix(p, "þ")
			v, ok2 := strings.CutSuffix(v, "þ")
			if !ok1 || !ok2 || strings.Contains(v, "þ") || len(p) < len("þþ") {
				return nil, false
			}
			out = append(out, strings.ReplaceAll(v, "®", "\n")) // ® stands for a newline
		}
		return out, true
	}
	columns, ok := fields(lines[0])
	if !ok {
		c.fail(name, "header row without its þ qualifiers")
		return
	}
	col := map[string]int{}
	for i, k := range columns {
		col[k] = i
	}
	for _, k := range []string{"DOCTYPE", "RECORDID", "BEGBATES", "NATIVEPATH"} {
		if _, ok := col[k]; !ok {
			c.fail(name, "no %s column", k)
			return
		}
	}
	gotRecords, gotAtts := map[string]string{}, map[string]string{}
	for n, line := range lines[1:] {
		v, ok := fields(line)
		if !ok || len(v) != len(columns) {
			c.fail(name, "row %d is malformed", n+1)
			return
		}
		switch v[col["DOCTYPE"]] {
		case "record":
			gotRecords[v[col["RECORDID"]]] = v[col["BEGBATES"]]
		case "attachment":
			gotAtts[v[col["NATIVEPATH"]]] = v[col["BEGBATES"]]
		}
	}
	wantRecords, wantAtts := map[string]string{}, map[string]string{}
	for _, r := range records {
		wantRecords[r.RecordID] = r.Bates
		for _, a := range r.Attachments {
			wantAtts[a.Path] = a.Bates
		}
	}
	if !maps.Equal(gotRecords, wantRecords) {
		c.fail(name, "its records or their Bates numbers differ from the manifest")
	}
	if !maps.Equal(gotAtts, wantAtts) {
		c.fail(name, "its attachments or their Bates numbers differ from the manifest")
	}
}

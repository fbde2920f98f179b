package directory

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
	"github.com/chive-net/chive/netdoc"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the committed fuzz seeds in testdata/fuzz/FuzzDescriptorUpload")

// fuzzTime is the authority's clock in the upload fuzzer; the seed
// descriptors are published a minute before it.
var fuzzTime = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fuzzSeeds are the committed seeds: valid descriptors (a plain relay and
// an exit with every optional field) and near misses.
func fuzzSeeds(tb testing.TB) map[string][]byte {
	k := fixedKey(tb, "fuzz relay")
	plain := signedDescriptor(tb, k, "fuzzrelay", netip.MustParseAddrPort("127.0.0.1:9001"), mustOnion(tb), false, fuzzTime.Add(-time.Minute))

	ek := fixedKey(tb, "fuzz exit")
	d := testDescriptor(ek, "fuzzexit", netip.MustParseAddrPort("203.0.113.7:443"), mustOnion(tb), true, fuzzTime.Add(-time.Minute))
	d.Addr6 = netip.MustParseAddrPort("[2001:db8::7]:443")
	d.PrevOnionKey = mustOnion(tb)
	d.DelayClasses = []uint8{0, 1, 2}
	d.Family = netdoc.NormalizeFamily(ek.ID(), []layercrypt.RelayID{k.ID(), fixedKey(tb, "fuzz other").ID()})
	d.Policy = exitpolicy.Policy{Rules: exitpolicy.RejectPrivate(), Default: exitpolicy.Accept}
	exit, err := d.Sign(ek)
	if err != nil {
		tb.Fatal(err)
	}
	return map[string][]byte{
		"valid-relay":     plain,
		"valid-exit":      exit,
		"bad-signature":   bytes.Replace(plain, []byte("bandwidth 1048576"), []byte("bandwidth 1048577"), 1),
		"truncated":       plain[:len(plain)/2],
		"no-signature":    plain[:bytes.LastIndex(plain, []byte("signature "))],
		"duplicate-line":  bytes.Replace(plain, []byte("uptime 3600\n"), []byte("uptime 3600\nuptime 3600\n"), 1),
		"wrong-type":      bytes.Replace(plain, []byte("chive-descriptor 1"), []byte("chive-vote 1"), 1),
		"crlf":            bytes.ReplaceAll(plain, []byte("\n"), []byte("\r\n")),
		"empty":           {},
		"stale":           signedDescriptor(tb, k, "fuzzrelay", netip.MustParseAddrPort("127.0.0.1:9001"), mustOnion(tb), false, fuzzTime.Add(-25*time.Hour)),
		"signature-only":  []byte("signature AAAA\n"),
		"trailing-data":   append(append([]byte{}, plain...), "extra\n"...),
		"nul-in-nickname": bytes.Replace(plain, []byte("nickname fuzzrelay"), []byte("nickname fuzz\x00relay"), 1),
	}
}

// TestFuzzSeeds keeps the committed seeds in step with fuzzSeeds (run with
// -update-seeds to rewrite them) and checks the valid ones are accepted.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDescriptorUpload")
	seeds := fuzzSeeds(t)
	if *updateSeeds {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := fixedAuthority(t, 0, "a1")
	a.now = func() time.Time { return fuzzTime }
	for name, b := range seeds {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (run go test -run TestFuzzSeeds -update-seeds)", err)
		}
		if want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b); string(got) != want {
			t.Errorf("seed %s is out of date (run go test -run TestFuzzSeeds -update-seeds)", name)
		}
		st, msg := a.acceptDescriptor(b)
		if valid := strings.HasPrefix(name, "valid-"); valid != (st == http.StatusOK) {
			t.Errorf("seed %s: %d %s", name, st, msg)
		}
	}
}

// FuzzDescriptorUpload drives POST /chive/v1/descriptor: every answer is
// one line; 200 exactly when netdoc accepts the document (which the
// authority then holds byte for byte), otherwise 400 with the reason.
//
// The seeds are the committed corpus (testdata/fuzz/FuzzDescriptorUpload,
// written from fuzzSeeds).
func FuzzDescriptorUpload(f *testing.F) {
	a := fixedAuthority(f, 0, "a1")
	a.now = func() time.Time { return fuzzTime }
	h := a.Handler()
	f.Fuzz(func(t *testing.T, b []byte) {
		a.mu.Lock()
		clear(a.descs)
		a.mu.Unlock()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/chive/v1/descriptor", bytes.NewReader(b)))
		body := rec.Body.String()
		if !strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 {
			t.Fatalf("answer is not one line: %q", body)
		}
		d, perr := netdoc.ParseDescriptorWithLimits(b, fuzzTime, a.descLimits)
		switch rec.Code {
		case http.StatusOK:
			if perr != nil || body != "accepted\n" {
				t.Fatalf("accepted a descriptor netdoc refuses (%v): %q", perr, body)
			}
			a.mu.Lock()
			held := a.descs[d.ID]
			a.mu.Unlock()
			if !bytes.Equal(held.raw, b) || held.d.Digest() != d.Digest() {
				t.Fatalf("the held descriptor is not the one uploaded")
			}
		case http.StatusBadRequest:
			if perr == nil && len(b) <= netdoc.MaxDescriptorSize {
				t.Fatalf("refused a descriptor netdoc accepts: %q", body)
			}
			if !strings.HasPrefix(body, "refused: ") {
				t.Fatalf("refusal without the prefix: %q", body)
			}
		default:
			t.Fatalf("HTTP %d %q", rec.Code, body)
		}
	})
}

package netdoc

import (
	"bytes"
	"os"
	"testing"
)

func addGolden(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseDescriptor: whatever parses re-encodes to exactly the input,
// and is valid; the verifying parser never panics.
func FuzzParseDescriptor(f *testing.F) {
	addGolden(f, "descriptor.golden", "descriptor-minimal.golden")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseDescriptor(b, testTime)
		d, _, sig, err := parseDescriptor(b)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("parsed descriptor does not validate: %v", err)
		}
		if out := appendSignatureLine(d.appendBody(nil), sig); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n%s", lineDiff(b, out))
		}
	})
}

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

// FuzzParseVote: whatever parses re-encodes to exactly the input and
// validates; the verifying parser never panics.
func FuzzParseVote(f *testing.F) {
	addGolden(f, "vote.golden")
	_, ids := authorities(f, 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseVote(b, ids, testTime)
		v, _, sig, err := parseVote(b)
		if err != nil {
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("parsed vote does not validate: %v", err)
		}
		if out := appendSignatureLine(v.appendBody(nil), sig); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n%s", lineDiff(b, out))
		}
	})
}

// FuzzParseConsensus: whatever parses re-encodes to exactly the input and
// validates; the verifying parser never panics.
func FuzzParseConsensus(f *testing.F) {
	addGolden(f, "consensus.golden")
	_, ids := authorities(f, 3)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseConsensus(b, ids, testTime)
		c, bodyEnd, err := parseConsensus(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed consensus does not validate: %v", err)
		}
		if out := c.Encode(); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n%s", lineDiff(b, out))
		}
		if !bytes.Equal(c.Body(), b[:bodyEnd]) {
			t.Fatal("Body() differs from the signed bytes")
		}
	})
}

// FuzzParseSignatureLine: a parsed signature line re-encodes exactly.
func FuzzParseSignatureLine(f *testing.F) {
	f.Add([]byte("authority-signature JKfFu4byfgiPEsRbGN/AEQw/hVOk2WKMEO3nYeLae7A C9m/t27IRBmK8fTaTZksLTFqd8/rZjyEgVXvTnticoLsLclOdDt2NAnqwDeYuyi8MMNNGl4CBKfWVbwF/FsuAQ\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignatureLine(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Line(), b) {
			t.Fatalf("Line() = %q, input %q", s.Line(), b)
		}
	})
}

package cell

import (
	"bytes"
	"cmp"
	"reflect"
	"slices"
	"testing"
)

// Native fuzz tests: parse -> encode -> parse for every decoder. Seed corpora
// are committed under testdata/fuzz/FuzzXxx/.

func FuzzCell(f *testing.F) {
	f.Add([]byte{byte(CommandCreate2), 0, 3, 0, 2, 0xaa, 0xbb})
	f.Add([]byte{byte(CommandCreated2), 0, 1, 0xaa})
	f.Add([]byte{byte(CommandDestroy), 6})
	f.Fuzz(func(t *testing.T, in []byte) {
		var c Cell
		copy(c[:], in)
		if err := c.Check(); err != nil {
			return
		}
		var re Cell
		switch c.Command() {
		case CommandCreate2:
			var m, m2 Create2
			if m.Decode(&c) != nil {
				return
			}
			if err := m.Encode(&re); err != nil {
				t.Fatalf("re-encode %+v: %v", m, err)
			}
			if err := m2.Decode(&re); err != nil || m2.HType != m.HType || !bytes.Equal(m2.HData, m.HData) {
				t.Fatalf("round trip: %+v -> %+v, %v", m, m2, err)
			}
		case CommandCreated2:
			var m, m2 Created2
			if m.Decode(&c) != nil {
				return
			}
			if err := m.Encode(&re); err != nil {
				t.Fatalf("re-encode %+v: %v", m, err)
			}
			if err := m2.Decode(&re); err != nil || !bytes.Equal(m2.HData, m.HData) {
				t.Fatalf("round trip: %+v -> %+v, %v", m, m2, err)
			}
		case CommandDestroy:
			var m, m2 Destroy
			if err := m.Decode(&c); err != nil {
				t.Fatalf("DESTROY decode: %v", err)
			}
			m.Encode(&re)
			if err := m2.Decode(&re); err != nil || m2 != m {
				t.Fatalf("round trip: %+v -> %+v, %v", m, m2, err)
			}
		default:
			return
		}
		// The re-encoded cell differs from the input at most in padding.
		if re.Command() != c.Command() {
			t.Fatalf("command %v became %v", c.Command(), re.Command())
		}
	})
}

func FuzzRelay(f *testing.F) {
	f.Add(append(make([]byte, TagLen), 2, 0, 5, 'h', 'e', 'l', 'l', 'o'))
	f.Add(append(make([]byte, TagLen), 3, 0, 1, 6))
	f.Add(append(make([]byte, TagLen), 15, 0, 4, 0, 2, 0xca, 0xfe))
	f.Fuzz(func(t *testing.T, in []byte) {
		var body [BodyLen]byte
		copy(body[:], in)
		m, err := DecodeRelayMsg(&body)
		if err != nil {
			return
		}
		re := body // keeps the tag; Encode must overwrite the rest
		if err := m.Encode(&re); err != nil {
			t.Fatalf("re-encode %#v: %v", m, err)
		}
		if _, isDrop := m.(*Drop); !isDrop && re != body {
			// Every message but DROP has one encoding.
			t.Fatalf("re-encoding differs:\n in %x\nout %x", body[:], re[:])
		}
		m2, err := DecodeRelayMsg(&re)
		if err != nil {
			t.Fatalf("decode re-encoded %#v: %v", m, err)
		}
		if !reflect.DeepEqual(normalize(m), normalize(m2)) {
			t.Fatalf("round trip: %#v -> %#v", m, m2)
		}
	})
}

func FuzzExtend2(f *testing.F) {
	f.Add([]byte{0, 0, 3, 0, 0})
	f.Add([]byte{1, 0, 6, 192, 0, 2, 1, 0x23, 0x29, 0, 3, 0, 1, 0xaa})
	f.Fuzz(func(t *testing.T, in []byte) {
		var m Extend2
		if m.Decode(in) != nil {
			return
		}
		_, _, _ = m.Target() // must not panic
		if m.Len() != len(in) {
			t.Fatalf("Len() = %d for %d input bytes", m.Len(), len(in))
		}
		var body [BodyLen]byte
		if err := m.Encode(&body); err != nil {
			if len(in) > MaxRelayData {
				return // decodable, but too big for one relay message
			}
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		cmd, data, err := DecodeRelay(&body)
		if err != nil || cmd != RelayExtend2 {
			t.Fatalf("DecodeRelay: %v, %v", cmd, err)
		}
		if !bytes.Equal(data, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, data)
		}
		var m2 Extend2
		if err := m2.Decode(data); err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if !reflect.DeepEqual(normalize(&m), normalize(&m2)) {
			t.Fatalf("round trip: %+v -> %+v", m, m2)
		}
	})
}

func sortedExts(exts []Extension) []Extension {
	s := slices.Clone(exts)
	slices.SortFunc(s, func(a, b Extension) int { return cmp.Compare(a.Type, b.Type) })
	for i := range s {
		if len(s[i].Data) == 0 {
			s[i].Data = nil
		}
	}
	return s
}

func FuzzExtensions(f *testing.F) {
	f.Add([]byte{1, 0xc0, 6, 1, 2, 1, 1, 2, 1})
	f.Add([]byte{1, 0xc1, 7, 0, 1, 2, 1, 1, 2, 1})
	f.Add([]byte{2, 1, 0, 0xc0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		exts, err := DecodeExtensions(in)
		if err == nil {
			msg, err := EncodeExtensions(exts)
			if err != nil {
				t.Fatalf("re-encode %v: %v", exts, err)
			}
			exts2, err := DecodeExtensions(msg)
			if err != nil {
				t.Fatalf("decode re-encoded: %v", err)
			}
			if !reflect.DeepEqual(sortedExts(exts), sortedExts(exts2)) {
				t.Fatalf("round trip: %v -> %v", exts, exts2)
			}
			if len(msg) != len(in) {
				t.Fatalf("re-encoding is %d bytes, input %d", len(msg), len(in))
			}
		}
		var p CircuitParams
		if p.Decode(in) == nil {
			msg, err := p.Encode()
			if err != nil {
				t.Fatalf("re-encode %+v: %v", p, err)
			}
			var p2 CircuitParams
			if err := p2.Decode(msg); err != nil || !reflect.DeepEqual(p, p2) {
				t.Fatalf("round trip: %+v -> %+v, %v", p, p2, err)
			}
		}
		var r CircuitParamsReply
		if r.Decode(in) == nil {
			msg, err := r.Encode()
			if err != nil {
				t.Fatalf("re-encode %+v: %v", r, err)
			}
			var r2 CircuitParamsReply
			if err := r2.Decode(msg); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("round trip: %+v -> %+v, %v", r, r2, err)
			}
		}
	})
}

func FuzzStreamRequest(f *testing.F) {
	f.Add([]byte("\x01\x01\x0bexample.com\x01\xbb"))
	f.Add([]byte("\x01\x02\x0bexample.com"))
	f.Add(append([]byte{1, 3, 0, 12}, testDNSQuery...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		req, err := ReadStreamRequest(r)
		if err != nil {
			return
		}
		consumed := len(in) - r.Len()
		enc, err := req.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", req, err)
		}
		if !bytes.Equal(enc, in[:consumed]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in[:consumed], enc)
		}
		req2, err := ReadStreamRequest(bytes.NewReader(enc))
		if err != nil || !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip: %+v -> %+v, %v", req, req2, err)
		}
	})
}

func FuzzStreamReply(f *testing.F) {
	// The first byte is the request kind; the rest is the reply.
	f.Add([]byte{1, 0, 4, 93, 184, 216, 34, 1, 187})
	f.Add([]byte{2, 0, 1, 6, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x0e, 0x10})
	f.Add([]byte{1, 5})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 {
			return
		}
		kind := StreamKind(in[0])
		r := bytes.NewReader(in[1:])
		rep, err := ReadStreamReply(r, kind)
		if rep == nil {
			if err == nil {
				t.Fatal("nil reply without error")
			}
			return
		}
		if (err != nil) != (rep.Status != StatusSucceeded) {
			t.Fatalf("status %v with error %v", rep.Status, err)
		}
		consumed := len(in) - 1 - r.Len()
		enc, err := AppendStreamReply(nil, kind, rep)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", rep, err)
		}
		if !bytes.Equal(enc, in[1:1+consumed]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in[1:1+consumed], enc)
		}
		rep2, _ := ReadStreamReply(bytes.NewReader(enc), kind)
		if !reflect.DeepEqual(rep, rep2) {
			t.Fatalf("round trip: %+v -> %+v", rep, rep2)
		}
	})
}

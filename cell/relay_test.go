package cell

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// tagHex is the 16-byte tag the golden relay tests leave in place.
const tagHex = "11111111111111111111111111111111"

// bodyWithTag returns a body whose tag is 0x11... and whose payload is
// garbage that an encoder must overwrite.
func bodyWithTag() *[BodyLen]byte {
	var b [BodyLen]byte
	for i := range b {
		b[i] = 0x5a
	}
	for i := range TagLen {
		b[i] = 0x11
	}
	return &b
}

// bodyFromHex returns a body starting with the given hex, zero after it.
func bodyFromHex(t testing.TB, s string) *[BodyLen]byte {
	t.Helper()
	b := unhex(t, s)
	if len(b) > BodyLen {
		t.Fatalf("test hex is %d bytes, longer than a body", len(b))
	}
	var body [BodyLen]byte
	copy(body[:], b)
	return &body
}

func TestRelayCommandString(t *testing.T) {
	for _, tc := range []struct {
		c     RelayCommand
		want  string
		known bool
	}{
		{RelayData, "DATA", true},
		{RelayEnd, "END", true},
		{RelayTruncate, "TRUNCATE", true},
		{RelayTruncated, "TRUNCATED", true},
		{RelayDrop, "DROP", true},
		{RelayExtend2, "EXTEND2", true},
		{RelayExtended2, "EXTENDED2", true},
		{0, "RelayCommand(0)", false},
		{1, "RelayCommand(1)", false},
		{5, "RelayCommand(5)", false},
		{6, "RelayCommand(6)", false},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("RelayCommand(%d).String() = %q, want %q", uint8(tc.c), got, tc.want)
		}
		if got := tc.c.Known(); got != tc.known {
			t.Errorf("RelayCommand(%d).Known() = %v, want %v", uint8(tc.c), got, tc.known)
		}
	}
	if got := EndDone.String(); got != "DONE" {
		t.Errorf("EndDone = %q", got)
	}
	if got := EndReason(0).String(); got != "EndReason(0)" {
		t.Errorf("EndReason(0) = %q", got)
	}
	if got := EndReason(15).String(); got != "EndReason(15)" {
		t.Errorf("EndReason(15) = %q", got)
	}
}

// Golden relay bodies: the tag, then the hex, then zeros. These are the
// examples printed in docs/PROTOCOL.md.
func TestRelayGolden(t *testing.T) {
	var id [Ed25519IDLen]byte
	for i := range id {
		id[i] = byte(i)
	}
	v4, err := NewAddrLinkSpec(mustAddrPort(t, "192.0.2.1:9001"))
	if err != nil {
		t.Fatal(err)
	}
	v6, err := NewAddrLinkSpec(mustAddrPort(t, "[2001:db8::1]:443"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msg  RelayMsg
		want string
	}{
		{"DATA", &Data{Data: []byte("hello")}, "02 0005 68656c6c6f"},
		{"DATA empty", &Data{}, "02 0000"},
		{"END", &End{Reason: EndDone}, "03 0001 06"},
		{"TRUNCATE", &Truncate{}, "08 0000"},
		{"TRUNCATED", &Truncated{Reason: DestroyConnectFailed}, "09 0001 06"},
		{"DROP", &Drop{}, "0a 0000"},
		{"EXTEND2", &Extend2{
			Specs: []LinkSpec{v4, NewEd25519LinkSpec(id)},
			HType: HTypeNtorV3,
			HData: []byte{0xab, 0xcd},
		}, `0e 0031
			02
			00 06 c0000201 2329
			03 20 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
			0003 0002 abcd`},
		{"EXTEND2 IPv6 and opaque", &Extend2{
			Specs: []LinkSpec{NewEd25519LinkSpec(id), v6, {Type: 0x7f, Data: []byte{1, 2, 3}}},
			HType: HTypeNtorV3,
		}, `0e 0040
			03
			03 20 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
			01 12 20010db8000000000000000000000001 01bb
			7f 03 010203
			0003 0000`},
		{"EXTENDED2", &Extended2{HData: []byte{0xca, 0xfe}}, "0f 0004 0002 cafe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bodyWithTag()
			if err := tc.msg.Encode(body); err != nil {
				t.Fatal(err)
			}
			want := bodyFromHex(t, tagHex+tc.want)
			if *body != *want {
				t.Fatalf("got  %x\nwant %x", body[:], want[:])
			}
			got, err := DecodeRelayMsg(body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(tc.msg)) {
				t.Errorf("decoded %#v, want %#v", got, tc.msg)
			}
		})
	}
}

// normalize maps empty slices to nil so that DeepEqual compares content.
func normalize(m RelayMsg) RelayMsg {
	switch v := m.(type) {
	case *Data:
		if len(v.Data) == 0 {
			return &Data{}
		}
	case *Extended2:
		if len(v.HData) == 0 {
			return &Extended2{}
		}
	case *Extend2:
		c := *v
		if len(c.HData) == 0 {
			c.HData = nil
		}
		if len(c.Specs) == 0 {
			c.Specs = nil
		}
		for i := range c.Specs {
			if len(c.Specs[i].Data) == 0 {
				c.Specs = append([]LinkSpec(nil), c.Specs...)
				c.Specs[i].Data = nil
			}
		}
		return &c
	}
	return m
}

func TestEncodeRelayFull(t *testing.T) {
	body := bodyWithTag()
	data := bytes.Repeat([]byte{0x77}, MaxRelayData)
	if err := EncodeRelay(body, RelayData, data); err != nil {
		t.Fatal(err)
	}
	want := bodyFromHex(t, tagHex+"02 01ea"+strings.Repeat("77", MaxRelayData))
	if *body != *want {
		t.Fatalf("got %x", body[:])
	}
	cmd, got, err := DecodeRelay(body)
	if err != nil || cmd != RelayData || !bytes.Equal(got, data) {
		t.Fatalf("DecodeRelay: %v %d bytes %v", cmd, len(got), err)
	}
	if &got[0] != &body[TagLen+RelayHeaderLen] {
		t.Error("DecodeRelay data does not alias the body")
	}
	if cap(got) != len(got) {
		t.Errorf("DecodeRelay data has capacity %d beyond its length %d", cap(got), len(got))
	}
}

func TestEncodeRelayInPlace(t *testing.T) {
	// data may alias the body, e.g. when a caller filled the data area
	// first.
	body := bodyWithTag()
	copy(body[TagLen+RelayHeaderLen:], "abc")
	if err := EncodeRelay(body, RelayData, body[TagLen+RelayHeaderLen:TagLen+RelayHeaderLen+3]); err != nil {
		t.Fatal(err)
	}
	if want := bodyFromHex(t, tagHex+"02 0003 616263"); *body != *want {
		t.Fatalf("got %x", body[:])
	}
}

func TestEncodeRelayErrors(t *testing.T) {
	body := bodyWithTag()
	before := *body
	if err := EncodeRelay(body, RelayData, make([]byte, MaxRelayData+1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("491 bytes: got %v, want ErrTooLong", err)
	}
	if err := EncodeRelay(body, 1, nil); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("command 1: got %v, want ErrUnknownCommand", err)
	}
	if *body != before {
		t.Error("failed EncodeRelay changed the body")
	}
	if err := (&Extended2{HData: make([]byte, MaxExtended2HData+1)}).Encode(body); !errors.Is(err, ErrTooLong) {
		t.Errorf("EXTENDED2 489 bytes: got %v, want ErrTooLong", err)
	}
	if err := (&Extended2{HData: make([]byte, MaxExtended2HData)}).Encode(body); err != nil {
		t.Errorf("EXTENDED2 488 bytes: %v", err)
	}
}

func TestDecodeRelayErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string // after the tag
		want error
	}{
		{"command 0", "00 0000", ErrUnknownCommand},
		{"command 1 (BEGIN)", "01 0000", ErrUnknownCommand},
		{"command 255", "ff 0000", ErrUnknownCommand},
		{"LENGTH 491", "02 01eb", ErrTooLong},
		{"LENGTH ffff", "02 ffff", ErrTooLong},
		{"non-zero padding", "02 0001 61 00 01", ErrBadPadding},
		{"non-zero padding far", "02 0000" + strings.Repeat("00", 400) + "01", ErrBadPadding},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeRelay(bodyFromHex(t, tagHex+tc.body))
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// The last byte of the body is padding too.
	body := bodyFromHex(t, tagHex+"02 0000")
	body[BodyLen-1] = 1
	if _, _, err := DecodeRelay(body); !errors.Is(err, ErrBadPadding) {
		t.Errorf("last byte non-zero: got %v, want ErrBadPadding", err)
	}
	// The tag is not looked at.
	body = bodyFromHex(t, "ffffffffffffffffffffffffffffffff 02 0000")
	if _, _, err := DecodeRelay(body); err != nil {
		t.Errorf("tag content: %v", err)
	}
}

func TestRelayMsgDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string // after the tag
		want error
	}{
		{"END empty", "03 0000", ErrShortBody},
		{"END long", "03 0002 0600", ErrTooLong},
		{"TRUNCATE with data", "08 0001 00", ErrTooLong},
		{"TRUNCATED empty", "09 0000", ErrShortBody},
		{"TRUNCATED long", "09 0002 0100", ErrTooLong},
		{"EXTENDED2 empty", "0f 0000", ErrShortBody},
		{"EXTENDED2 short", "0f 0001 00", ErrShortBody},
		{"EXTENDED2 HLEN beyond data", "0f 0003 0002 aa", ErrShortBody},
		{"EXTENDED2 trailing", "0f 0004 0001 aa bb", ErrMalformed},
		{"EXTEND2 empty", "0e 0000", ErrShortBody},
		{"EXTEND2 no handshake header", "0e 0003 00 0003", ErrShortBody},
		{"EXTEND2 NSPEC beyond data", "0e 0005 01 0003 0000", ErrShortBody},
		{"EXTEND2 LSLEN beyond data", "0e 0008 01 7f 05 aa 0003 0000", ErrShortBody},
		{"EXTEND2 spec header cut", "0e 0002 01 7f", ErrShortBody},
		{"EXTEND2 IPv4 of 5 bytes", "0e 000c 01 00 05 0102030405 0003 0000", ErrMalformed},
		{"EXTEND2 IPv6 of 6 bytes", "0e 000d 01 01 06 010203040506 0003 0000", ErrMalformed},
		{"EXTEND2 Ed25519 of 31 bytes", "0e 0026 01 03 1f " + strings.Repeat("aa", 31) + " 0003 0000", ErrMalformed},
		{"EXTEND2 legacy ID of 19 bytes", "0e 0022 01 02 13 " + strings.Repeat("aa", 19) + " 0003 0000", ErrMalformed},
		{"EXTEND2 HLEN beyond data", "0e 0006 00 0003 0002 aa", ErrShortBody},
		{"EXTEND2 trailing", "0e 0007 00 0003 0001 aa bb", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeRelayMsg(bodyFromHex(t, tagHex+tc.body))
			if !errors.Is(err, tc.want) {
				t.Errorf("got %#v, %v; want %v", m, err, tc.want)
			}
		})
	}
}

func TestRelayMsgDecodeLenient(t *testing.T) {
	// DROP ignores its data; END and TRUNCATED keep unknown reasons.
	for _, tc := range []struct {
		body string
		want RelayMsg
	}{
		{"0a 0003 010203", &Drop{}},
		{"03 0001 ee", &End{Reason: 0xee}},
		{"09 0001 ee", &Truncated{Reason: 0xee}},
	} {
		m, err := DecodeRelayMsg(bodyFromHex(t, tagHex+tc.body))
		if err != nil || !reflect.DeepEqual(m, tc.want) {
			t.Errorf("%s: got %#v, %v; want %#v", tc.body, m, err, tc.want)
		}
	}
}

func TestDecodedMessagesDoNotAlias(t *testing.T) {
	body := bodyWithTag()
	if err := (&Extended2{HData: []byte{1, 2, 3}}).Encode(body); err != nil {
		t.Fatal(err)
	}
	m, err := DecodeRelayMsg(body)
	if err != nil {
		t.Fatal(err)
	}
	clear(body[:])
	if got := m.(*Extended2).HData; !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("EXTENDED2 aliases the body: %x", got)
	}
}

func TestEncodeDecodeRelayAllocs(t *testing.T) {
	body := bodyWithTag()
	data := make([]byte, 300)
	if n := testing.AllocsPerRun(100, func() {
		if err := EncodeRelay(body, RelayData, data); err != nil {
			t.Fatal(err)
		}
		if _, _, err := DecodeRelay(body); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("EncodeRelay+DecodeRelay: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := (&End{Reason: EndDone}).Encode(body); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("End.Encode: %v allocs, want 0", n)
	}
}

func BenchmarkEncodeRelay(b *testing.B) {
	for _, n := range []int{0, 100, MaxRelayData} {
		b.Run(itoa(n), func(b *testing.B) {
			body := bodyWithTag()
			data := make([]byte, n)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if err := EncodeRelay(body, RelayData, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeRelay(b *testing.B) {
	for _, n := range []int{0, 100, MaxRelayData} {
		b.Run(itoa(n), func(b *testing.B) {
			body := bodyWithTag()
			if err := EncodeRelay(body, RelayData, make([]byte, n)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, _, err := DecodeRelay(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

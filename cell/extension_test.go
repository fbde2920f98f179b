package cell

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Golden ntor-v3 messages; the examples in docs/PROTOCOL.md.
func TestExtensionGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		encode func() ([]byte, error)
		want   string
	}{
		{"CircuitParams", func() ([]byte, error) {
			return (&CircuitParams{DelayClass: 1, Protocols: DefaultProtocols()}).Encode()
		}, "01 c0 06 01 02 0101 0201"},
		{"CircuitParams no protocols", func() ([]byte, error) {
			return (&CircuitParams{DelayClass: 2}).Encode()
		}, "01 c0 02 02 00"},
		{"CircuitParamsReply OK", func() ([]byte, error) {
			return (&CircuitParamsReply{Status: ParamsOK, DelayClass: 1, Protocols: DefaultProtocols()}).Encode()
		}, "01 c1 07 00 01 02 0101 0201"},
		{"CircuitParamsReply not served", func() ([]byte, error) {
			return (&CircuitParamsReply{Status: ParamsDelayClassNotServed, DelayClass: 2}).Encode()
		}, "01 c1 03 01 02 00"},
		{"sorted by type", func() ([]byte, error) {
			return EncodeExtensions([]Extension{
				{Type: ExtCircuitParams, Data: []byte{0, 0}},
				{Type: 1},
				{Type: 2, Data: []byte{0x1f}},
			})
		}, "03 01 00 02 01 1f c0 02 0000"},
		{"empty", func() ([]byte, error) { return EncodeExtensions(nil) }, "00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.encode()
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.want); !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
}

func TestCircuitParamsDecode(t *testing.T) {
	// Unknown extensions (here Tor's CC_REQUEST and a reply-type
	// extension) are skipped.
	msg := unhex(t, "03 01 00 c0 04 00 01 0101 c1 00")
	var p CircuitParams
	if err := p.Decode(msg); err != nil {
		t.Fatal(err)
	}
	want := CircuitParams{DelayClass: 0, Protocols: []ProtocolVersion{{ProtocolRelay, 1}}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v, want %+v", p, want)
	}
	// Several versions of one protocol are fine in a request.
	if err := p.Decode(unhex(t, "01 c0 06 00 02 0101 0102")); err != nil {
		t.Errorf("two Relay versions: %v", err)
	}
	var r CircuitParamsReply
	if err := r.Decode(unhex(t, "02 02 01 07 c1 05 00 00 01 0201")); err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Version(ProtocolStream); !ok || v != 1 {
		t.Errorf("Version(Stream) = %d, %v", v, ok)
	}
	if _, ok := r.Version(ProtocolRelay); ok {
		t.Error("Version(Relay) found in a reply without it")
	}
}

func TestExtensionDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		want error
	}{
		{"empty message", "", ErrShortBody},
		{"count beyond data", "01", ErrShortBody},
		{"header cut", "01 c0", ErrShortBody},
		{"EXT_LEN beyond data", "01 c0 03 0000", ErrShortBody},
		{"trailing bytes", "00 00", ErrMalformed},
		{"trailing after extension", "01 01 00 ff", ErrMalformed},
		{"duplicate type", "02 01 00 01 00", ErrMalformed},
		{"duplicate params", "02 c0 02 0000 c0 02 0000", ErrMalformed},
		{"missing params", "01 01 00", ErrMissingExtension},
		{"no extension", "00", ErrMissingExtension},
		{"params empty", "01 c0 00", ErrShortBody},
		{"params no count", "01 c0 01 00", ErrShortBody},
		{"params count beyond", "01 c0 03 00 02 01", ErrShortBody},
		{"params pairs cut", "01 c0 04 00 02 01 01", ErrShortBody},
		{"params trailing", "01 c0 05 00 01 0101 ff", ErrMalformed},
		{"params duplicate pair", "01 c0 06 00 02 0101 0101", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p CircuitParams
			err := p.Decode(unhex(t, tc.msg))
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		msg  string
		want error
	}{
		{"reply short", "01 c1 01 00", ErrShortBody},
		{"reply no count", "01 c1 02 00 00", ErrShortBody},
		{"reply same protocol twice", "01 c1 07 00 00 02 0101 0102", ErrMalformed},
		{"reply missing", "01 c0 02 00 00", ErrMissingExtension},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r CircuitParamsReply
			err := r.Decode(unhex(t, tc.msg))
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestExtensionEncodeErrors(t *testing.T) {
	if _, err := EncodeExtensions([]Extension{{Type: 1}, {Type: 1}}); !errors.Is(err, ErrMalformed) {
		t.Errorf("duplicate: got %v, want ErrMalformed", err)
	}
	if _, err := EncodeExtensions([]Extension{{Type: 1, Data: make([]byte, 256)}}); !errors.Is(err, ErrTooLong) {
		t.Errorf("256-byte data: got %v, want ErrTooLong", err)
	}
	if _, err := EncodeExtensions(make([]Extension, 256)); !errors.Is(err, ErrTooLong) {
		t.Errorf("256 extensions: got %v, want ErrTooLong", err)
	}
	many := make([]ProtocolVersion, 127)
	for i := range many {
		many[i] = ProtocolVersion{ProtocolID(i), 1}
	}
	if _, err := (&CircuitParams{Protocols: many}).Encode(); !errors.Is(err, ErrTooLong) {
		t.Errorf("127 protocols: got %v, want ErrTooLong", err)
	}
	if b, err := (&CircuitParams{Protocols: many[:126]}).Encode(); err != nil || len(b) != 1+2+254 {
		t.Errorf("126 protocols: %d bytes, %v", len(b), err)
	}
	if _, err := (&CircuitParams{Protocols: []ProtocolVersion{{1, 1}, {1, 1}}}).Encode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("duplicate pair: got %v, want ErrMalformed", err)
	}
	if _, err := (&CircuitParamsReply{Protocols: []ProtocolVersion{{1, 1}, {1, 2}}}).Encode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("reply with two Relay versions: got %v, want ErrMalformed", err)
	}
}

func TestChooseProtocols(t *testing.T) {
	for _, tc := range []struct {
		name               string
		offered, supported []ProtocolVersion
		want               []ProtocolVersion
	}{
		{"same", DefaultProtocols(), DefaultProtocols(), DefaultProtocols()},
		{"highest common", []ProtocolVersion{{1, 1}, {1, 2}, {1, 3}}, []ProtocolVersion{{1, 2}, {1, 1}, {1, 4}}, []ProtocolVersion{{1, 2}}},
		{"none", []ProtocolVersion{{1, 2}}, []ProtocolVersion{{1, 1}}, nil},
		{"sorted", []ProtocolVersion{{2, 1}, {1, 1}}, []ProtocolVersion{{2, 1}, {1, 1}}, []ProtocolVersion{{1, 1}, {2, 1}}},
		{"unknown offered ignored", []ProtocolVersion{{9, 9}, {1, 1}}, []ProtocolVersion{{1, 1}}, []ProtocolVersion{{1, 1}}},
	} {
		if got := ChooseProtocols(tc.offered, tc.supported); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestExtensionStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ExtCircuitParams.String(), "CIRCUIT_PARAMS"},
		{ExtCircuitParamsReply.String(), "CIRCUIT_PARAMS_REPLY"},
		{ExtensionType(1).String(), "ExtensionType(1)"},
		{ProtocolVersion{ProtocolRelay, 1}.String(), "Relay=1"},
		{ProtocolVersion{ProtocolStream, 1}.String(), "Stream=1"},
		{ProtocolVersion{7, 3}.String(), "ProtocolID(7)=3"},
		{ParamsDelayClassNotServed.String(), "delay class not served"},
		{ParamsStatus(9).String(), "ParamsStatus(9)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if !strings.HasPrefix(NtorV3Verification, "chive-circuit-v1") || len(NtorV3Verification) != 16 {
		t.Errorf("NtorV3Verification = %q", NtorV3Verification)
	}
}

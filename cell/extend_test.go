package cell

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func testID() [Ed25519IDLen]byte {
	var id [Ed25519IDLen]byte
	for i := range id {
		id[i] = byte(i)
	}
	return id
}

func TestLinkSpecGolden(t *testing.T) {
	for _, tc := range []struct {
		ap       string
		wantType LinkSpecType
		want     string
	}{
		{"192.0.2.1:9001", LinkSpecIPv4, "c0000201 2329"},
		{"[::ffff:192.0.2.1]:9001", LinkSpecIPv4, "c0000201 2329"},
		{"[2001:db8::1]:443", LinkSpecIPv6, "20010db8000000000000000000000001 01bb"},
	} {
		ls, err := NewAddrLinkSpec(mustAddrPort(t, tc.ap))
		if err != nil {
			t.Fatalf("%s: %v", tc.ap, err)
		}
		if ls.Type != tc.wantType || !bytes.Equal(ls.Data, unhex(t, tc.want)) {
			t.Errorf("%s: got %v %x, want %v %s", tc.ap, ls.Type, ls.Data, tc.wantType, tc.want)
		}
		ap, ok := ls.AddrPort()
		if want := mustAddrPort(t, tc.ap); !ok || ap.Addr() != want.Addr().Unmap() || ap.Port() != want.Port() {
			t.Errorf("%s: AddrPort() = %v, %v", tc.ap, ap, ok)
		}
		if _, ok := ls.Ed25519ID(); ok {
			t.Errorf("%s: Ed25519ID() ok on an address", tc.ap)
		}
	}
	ls := NewEd25519LinkSpec(testID())
	if id, ok := ls.Ed25519ID(); !ok || id != testID() {
		t.Errorf("Ed25519ID() = %x, %v", id, ok)
	}
	if _, ok := ls.AddrPort(); ok {
		t.Error("AddrPort() ok on an identity")
	}
	if _, err := NewAddrLinkSpec(netip.AddrPort{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid address: got %v, want ErrMalformed", err)
	}
	zoned := netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 1)
	if _, err := NewAddrLinkSpec(zoned); !errors.Is(err, ErrMalformed) {
		t.Errorf("zoned address: got %v, want ErrMalformed", err)
	}
	for typ, want := range map[LinkSpecType]string{0: "IPv4", 1: "IPv6", 2: "LegacyID", 3: "Ed25519", 4: "LinkSpecType(4)"} {
		if got := typ.String(); got != want {
			t.Errorf("LinkSpecType(%d) = %q, want %q", typ, got, want)
		}
	}
}

func addrSpec(t *testing.T, s string) LinkSpec {
	t.Helper()
	ls, err := NewAddrLinkSpec(mustAddrPort(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestExtend2Target(t *testing.T) {
	id := testID()
	idSpec := NewEd25519LinkSpec(id)
	opaque := LinkSpec{Type: 0x7f, Data: []byte{1}}
	legacy := LinkSpec{Type: LinkSpecLegacyID, Data: make([]byte, 20)}
	for _, tc := range []struct {
		name  string
		specs []LinkSpec
		want  []string
		err   error
	}{
		{"IPv4", []LinkSpec{idSpec, addrSpec(t, "192.0.2.1:9001")}, []string{"192.0.2.1:9001"}, nil},
		{"both, opaque ignored", []LinkSpec{addrSpec(t, "[2001:db8::1]:443"), opaque, legacy, idSpec, addrSpec(t, "192.0.2.1:9001")},
			[]string{"[2001:db8::1]:443", "192.0.2.1:9001"}, nil},
		{"loopback allowed", []LinkSpec{idSpec, addrSpec(t, "127.0.0.1:5000")}, []string{"127.0.0.1:5000"}, nil},
		{"no identity", []LinkSpec{addrSpec(t, "192.0.2.1:9001")}, nil, ErrMalformed},
		{"two identities", []LinkSpec{idSpec, idSpec, addrSpec(t, "192.0.2.1:9001")}, nil, ErrMalformed},
		{"no address", []LinkSpec{idSpec, opaque}, nil, ErrMalformed},
		{"nothing", nil, nil, ErrMalformed},
		{"two IPv4", []LinkSpec{idSpec, addrSpec(t, "192.0.2.1:9001"), addrSpec(t, "192.0.2.2:9001")}, nil, ErrMalformed},
		{"two IPv6", []LinkSpec{idSpec, addrSpec(t, "[2001:db8::1]:1"), addrSpec(t, "[2001:db8::2]:1")}, nil, ErrMalformed},
		{"port 0", []LinkSpec{idSpec, addrSpec(t, "192.0.2.1:0")}, nil, ErrMalformed},
		{"0.0.0.0", []LinkSpec{idSpec, addrSpec(t, "0.0.0.0:9001")}, nil, ErrMalformed},
		{"::", []LinkSpec{idSpec, addrSpec(t, "[::]:9001")}, nil, ErrMalformed},
		{"broadcast", []LinkSpec{idSpec, addrSpec(t, "255.255.255.255:9001")}, nil, ErrMalformed},
		{"multicast", []LinkSpec{idSpec, addrSpec(t, "224.0.0.1:9001")}, nil, ErrMalformed},
		{"mapped in IPv6 spec", []LinkSpec{idSpec, {Type: LinkSpecIPv6, Data: unhex(t, "00000000000000000000ffffc0000201 2329")}}, nil, ErrMalformed},
		{"bad size", []LinkSpec{idSpec, {Type: LinkSpecIPv4, Data: []byte{1}}}, nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Extend2{Specs: tc.specs, HType: HTypeNtorV3}
			gotID, addrs, err := m.Target()
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if err != nil {
				if addrs != nil || gotID != ([Ed25519IDLen]byte{}) {
					t.Errorf("error with results %x %v", gotID, addrs)
				}
				return
			}
			if gotID != id {
				t.Errorf("id %x, want %x", gotID, id)
			}
			var want []netip.AddrPort
			for _, s := range tc.want {
				want = append(want, mustAddrPort(t, s))
			}
			if !reflect.DeepEqual(addrs, want) {
				t.Errorf("addrs %v, want %v", addrs, want)
			}
		})
	}
}

func TestExtend2EncodeErrors(t *testing.T) {
	body := bodyWithTag()
	for _, tc := range []struct {
		name string
		m    Extend2
		want error
	}{
		{"too long", Extend2{HData: make([]byte, MaxRelayData-Extend2MinLen+1)}, ErrTooLong},
		{"spec too long", Extend2{Specs: []LinkSpec{{Type: 9, Data: make([]byte, 256)}}}, ErrTooLong},
		{"IPv4 wrong size", Extend2{Specs: []LinkSpec{{Type: LinkSpecIPv4, Data: make([]byte, 5)}}}, ErrMalformed},
		{"Ed25519 wrong size", Extend2{Specs: []LinkSpec{{Type: LinkSpecEd25519, Data: make([]byte, 33)}}}, ErrMalformed},
		{"256 specs", Extend2{Specs: make([]LinkSpec, 256)}, ErrTooLong},
	} {
		if err := tc.m.Encode(body); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// Exactly full fits.
	m := Extend2{HData: make([]byte, MaxRelayData-Extend2MinLen)}
	if err := m.Encode(body); err != nil {
		t.Fatalf("full EXTEND2: %v", err)
	}
	if m.Len() != MaxRelayData {
		t.Errorf("Len() = %d, want %d", m.Len(), MaxRelayData)
	}
	var got Extend2
	cmd, data, err := DecodeRelay(body)
	if err != nil || cmd != RelayExtend2 {
		t.Fatalf("DecodeRelay: %v %v", cmd, err)
	}
	if err := got.Decode(data); err != nil || len(got.HData) != MaxRelayData-Extend2MinLen || len(got.Specs) != 0 {
		t.Fatalf("Decode: %d specs, %d bytes, %v", len(got.Specs), len(got.HData), err)
	}
}

func TestExtend2RealisticFits(t *testing.T) {
	// A chive EXTEND2 (identity, IPv4, IPv6) with an ntor-v3 client
	// handshake (128 bytes plus the encrypted CircuitParams message).
	msg, err := (&CircuitParams{DelayClass: 1, Protocols: DefaultProtocols()}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := Extend2{
		Specs: []LinkSpec{NewEd25519LinkSpec(testID()), addrSpec(t, "192.0.2.1:9001"), addrSpec(t, "[2001:db8::1]:9001")},
		HType: HTypeNtorV3,
		HData: make([]byte, 128+len(msg)),
	}
	if err := m.Encode(bodyWithTag()); err != nil {
		t.Fatalf("realistic EXTEND2 of %d bytes: %v", m.Len(), err)
	}
}

package cell

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// LinkSpecType is the type of a link specifier in EXTEND2. The numbers are
// Tor's.
type LinkSpecType uint8

// Link specifier types.
const (
	// LinkSpecIPv4 is an IPv4 address (4) and TCP port (2).
	LinkSpecIPv4 LinkSpecType = 0
	// LinkSpecIPv6 is an IPv6 address (16) and TCP port (2).
	LinkSpecIPv6 LinkSpecType = 1
	// LinkSpecLegacyID is Tor's RSA identity digest (20). chive does not
	// use it; it is kept as an opaque specifier.
	LinkSpecLegacyID LinkSpecType = 2
	// LinkSpecEd25519 is the relay's Ed25519 identity key (32).
	LinkSpecEd25519 LinkSpecType = 3
)

// Sizes of link specifiers.
const (
	// LinkSpecHeaderLen is LSTYPE (1) + LSLEN (1).
	LinkSpecHeaderLen = 2
	// MaxLinkSpecData is the largest LSPEC.
	MaxLinkSpecData = 255
	// LinkSpecIPv4Len is the LSPEC size of an IPv4 specifier.
	LinkSpecIPv4Len = 4 + 2
	// LinkSpecIPv6Len is the LSPEC size of an IPv6 specifier.
	LinkSpecIPv6Len = 16 + 2
	// LinkSpecLegacyIDLen is the LSPEC size of a legacy identity.
	LinkSpecLegacyIDLen = 20
	// Ed25519IDLen is the size of a relay's Ed25519 identity (its public
	// key), and the LSPEC size of an Ed25519 specifier.
	Ed25519IDLen = 32
)

// String names the link specifier type.
func (t LinkSpecType) String() string {
	switch t {
	case LinkSpecIPv4:
		return "IPv4"
	case LinkSpecIPv6:
		return "IPv6"
	case LinkSpecLegacyID:
		return "LegacyID"
	case LinkSpecEd25519:
		return "Ed25519"
	}
	return fmt.Sprintf("LinkSpecType(%d)", uint8(t))
}

// fixedLen returns the LSPEC size a known type requires, or -1 for types
// that are opaque to chive.
func (t LinkSpecType) fixedLen() int {
	switch t {
	case LinkSpecIPv4:
		return LinkSpecIPv4Len
	case LinkSpecIPv6:
		return LinkSpecIPv6Len
	case LinkSpecLegacyID:
		return LinkSpecLegacyIDLen
	case LinkSpecEd25519:
		return Ed25519IDLen
	}
	return -1
}

// LinkSpec is one link specifier: LSTYPE (1) | LSLEN (1) | LSPEC (LSLEN).
// Data holds LSPEC. Types chive does not know are kept as they are, so a
// relay can pass them on unchanged (Tor does the same).
type LinkSpec struct {
	Type LinkSpecType
	Data []byte
}

// NewAddrLinkSpec returns the IPv4 or IPv6 link specifier for ap. An
// IPv4-mapped IPv6 address becomes an IPv4 specifier. Addresses with a zone
// are refused.
func NewAddrLinkSpec(ap netip.AddrPort) (LinkSpec, error) {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return LinkSpec{}, fmt.Errorf("link specifier for %v: invalid address: %w", ap, ErrMalformed)
	case a.Zone() != "":
		return LinkSpec{}, fmt.Errorf("link specifier for %v: address with zone: %w", ap, ErrMalformed)
	}
	a = a.Unmap()
	var data []byte
	typ := LinkSpecIPv6
	if a.Is4() {
		typ = LinkSpecIPv4
		b := a.As4()
		data = append(data, b[:]...)
	} else {
		b := a.As16()
		data = append(data, b[:]...)
	}
	data = binary.BigEndian.AppendUint16(data, ap.Port())
	return LinkSpec{Type: typ, Data: data}, nil
}

// NewEd25519LinkSpec returns the Ed25519 identity link specifier for id.
func NewEd25519LinkSpec(id [Ed25519IDLen]byte) LinkSpec {
	return LinkSpec{Type: LinkSpecEd25519, Data: append([]byte(nil), id[:]...)}
}

// AddrPort returns the address and port of an IPv4 or IPv6 specifier; ok
// is false for other types and for specifiers of the wrong size.
func (ls LinkSpec) AddrPort() (ap netip.AddrPort, ok bool) {
	switch {
	case ls.Type == LinkSpecIPv4 && len(ls.Data) == LinkSpecIPv4Len:
		a := netip.AddrFrom4([4]byte(ls.Data[:4]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(ls.Data[4:])), true
	case ls.Type == LinkSpecIPv6 && len(ls.Data) == LinkSpecIPv6Len:
		a := netip.AddrFrom16([16]byte(ls.Data[:16]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(ls.Data[16:])), true
	}
	return netip.AddrPort{}, false
}

// Ed25519ID returns the identity of an Ed25519 specifier; ok is false for
// other types and for specifiers of the wrong size.
func (ls LinkSpec) Ed25519ID() (id [Ed25519IDLen]byte, ok bool) {
	if ls.Type != LinkSpecEd25519 || len(ls.Data) != Ed25519IDLen {
		return id, false
	}
	return [Ed25519IDLen]byte(ls.Data), true
}

// check rejects a specifier whose LSPEC does not fit or does not have the
// size its (known) type requires.
func (ls LinkSpec) check() error {
	if len(ls.Data) > MaxLinkSpecData {
		return fmt.Errorf("link specifier %v: %d bytes, max %d: %w", ls.Type, len(ls.Data), MaxLinkSpecData, ErrTooLong)
	}
	if n := ls.Type.fixedLen(); n >= 0 && len(ls.Data) != n {
		return fmt.Errorf("link specifier %v: %d bytes, want %d: %w", ls.Type, len(ls.Data), n, ErrMalformed)
	}
	return nil
}

// Sizes of an EXTEND2 message.
const (
	// Extend2MinLen is NSPEC (1) + HTYPE (2) + HLEN (2), an EXTEND2 with no
	// specifiers and an empty handshake.
	Extend2MinLen = 1 + 2 + 2
)

// Extend2 is an EXTEND2 message: the client asks the last hop to extend the
// circuit to the relay the link specifiers name, sending it a CREATE2 with
// HType and HData.
//
//	NSPEC (1) | NSPEC x [LSTYPE (1) | LSLEN (1) | LSPEC (LSLEN)] |
//	HTYPE (2) | HLEN (2) | HDATA (HLEN)
//
// with nothing after HDATA. Decoding checks the framing and the sizes of
// known specifiers; Target checks chive's rules on their content.
type Extend2 struct {
	Specs []LinkSpec
	HType HType
	HData []byte
}

// RelayCommand returns RelayExtend2.
func (*Extend2) RelayCommand() RelayCommand { return RelayExtend2 }

// Len returns the size of m's encoded DATA field.
func (m *Extend2) Len() int {
	n := Extend2MinLen + len(m.HData)
	for _, ls := range m.Specs {
		n += LinkSpecHeaderLen + len(ls.Data)
	}
	return n
}

// Encode writes m into body. It fails with ErrTooLong if m does not fit in
// one relay message, and with ErrMalformed if a known specifier has the
// wrong size.
func (m *Extend2) Encode(body *[BodyLen]byte) error {
	if len(m.Specs) > 255 {
		return fmt.Errorf("encode EXTEND2: %d link specifiers, max 255: %w", len(m.Specs), ErrTooLong)
	}
	for _, ls := range m.Specs {
		if err := ls.check(); err != nil {
			return fmt.Errorf("encode EXTEND2: %w", err)
		}
	}
	if len(m.HData) > 0xffff {
		return fmt.Errorf("encode EXTEND2: handshake of %d bytes: %w", len(m.HData), ErrTooLong)
	}
	n := m.Len()
	if n > MaxRelayData {
		return fmt.Errorf("encode EXTEND2: %d bytes, max %d: %w", n, MaxRelayData, ErrTooLong)
	}
	p := body[relayDataOff:relayDataOff:BodyLen]
	p = append(p, byte(len(m.Specs)))
	for _, ls := range m.Specs {
		p = append(p, byte(ls.Type), byte(len(ls.Data)))
		p = append(p, ls.Data...)
	}
	p = binary.BigEndian.AppendUint16(p, m.HType)
	p = binary.BigEndian.AppendUint16(p, uint16(len(m.HData)))
	p = append(p, m.HData...)
	return finishRelay(body, RelayExtend2, len(p))
}

// Decode parses an EXTEND2 message's data. Everything is copied out of
// data (into one allocation).
func (m *Extend2) Decode(data []byte) error {
	if len(data) < Extend2MinLen {
		return fmt.Errorf("decode EXTEND2: %d bytes: %w", len(data), ErrShortBody)
	}
	buf := append([]byte(nil), data...)
	nspec := int(buf[0])
	p := buf[1:]
	specs := make([]LinkSpec, 0, nspec)
	for i := range nspec {
		if len(p) < LinkSpecHeaderLen {
			return fmt.Errorf("decode EXTEND2: link specifier %d of %d: %w", i+1, nspec, ErrShortBody)
		}
		ls := LinkSpec{Type: LinkSpecType(p[0])}
		n := int(p[1])
		p = p[LinkSpecHeaderLen:]
		if n > len(p) {
			return fmt.Errorf("decode EXTEND2: link specifier %d of %d: LSLEN %d, %d bytes left: %w", i+1, nspec, n, len(p), ErrShortBody)
		}
		ls.Data = p[:n:n]
		p = p[n:]
		if err := ls.check(); err != nil {
			return fmt.Errorf("decode EXTEND2: link specifier %d of %d: %w", i+1, nspec, err)
		}
		specs = append(specs, ls)
	}
	if len(p) < 4 {
		return fmt.Errorf("decode EXTEND2: handshake header: %w", ErrShortBody)
	}
	htype := binary.BigEndian.Uint16(p)
	hlen := int(binary.BigEndian.Uint16(p[2:]))
	p = p[4:]
	if hlen > len(p) {
		return fmt.Errorf("decode EXTEND2: HLEN %d, %d bytes left: %w", hlen, len(p), ErrShortBody)
	}
	if hlen < len(p) {
		return fmt.Errorf("decode EXTEND2: %d bytes after HDATA: %w", len(p)-hlen, ErrMalformed)
	}
	m.Specs = specs
	m.HType = htype
	m.HData = p[:hlen:hlen]
	return nil
}

// Target applies chive's rules to m's link specifiers and returns the
// relay they name: exactly one Ed25519 identity, and one or two addresses
// (at most one IPv4 and at most one IPv6), each a specified unicast address
// with a non-zero port. Specifiers of other types are ignored. Addresses are
// returned in the order they appear.
func (m *Extend2) Target() (id [Ed25519IDLen]byte, addrs []netip.AddrPort, err error) {
	var found [Ed25519IDLen]byte
	var nID, n4, n6 int
	for _, ls := range m.Specs {
		if err := ls.check(); err != nil {
			return id, nil, fmt.Errorf("EXTEND2 target: %w", err)
		}
		switch ls.Type {
		case LinkSpecEd25519:
			nID++
			found, _ = ls.Ed25519ID()
		case LinkSpecIPv4, LinkSpecIPv6:
			ap, _ := ls.AddrPort()
			if ls.Type == LinkSpecIPv4 {
				n4++
			} else {
				n6++
			}
			a := ap.Addr()
			if ap.Port() == 0 || a.IsUnspecified() || a.IsMulticast() || a.Is4In6() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				return id, nil, fmt.Errorf("EXTEND2 target: unusable address %v: %w", ap, ErrMalformed)
			}
			addrs = append(addrs, ap)
		}
	}
	switch {
	case nID != 1:
		return id, nil, fmt.Errorf("EXTEND2 target: %d Ed25519 identities, want 1: %w", nID, ErrMalformed)
	case n4+n6 == 0:
		return id, nil, fmt.Errorf("EXTEND2 target: no address: %w", ErrMalformed)
	case n4 > 1 || n6 > 1:
		return id, nil, fmt.Errorf("EXTEND2 target: %d IPv4 and %d IPv6 addresses, want at most one of each: %w", n4, n6, ErrMalformed)
	}
	return found, addrs, nil
}

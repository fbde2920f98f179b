package cell

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// ntor-v3 handshake messages. The client's and the relay's encrypted
// messages in ntor-v3 (Tor proposal 332; tor-spec "create-created-cells")
// are lists of extensions:
//
//	N_EXTENSIONS (1) | N_EXTENSIONS x [EXT_TYPE (1) | EXT_LEN (1) | EXT_DATA (EXT_LEN)]
//
// with nothing after the last extension. Unknown types are skipped. Tor lets
// a receiver ignore repeats of a type; chive rejects them.

// Verification string of chive's ntor-v3 handshakes (proposal 332's
// "verification" input).
const NtorV3Verification = "chive-circuit-v1"

// Limits of an extension list.
const (
	// ExtensionHeaderLen is EXT_TYPE (1) + EXT_LEN (1).
	ExtensionHeaderLen = 2
	// MaxExtensionData is the largest EXT_DATA.
	MaxExtensionData = 255
	// MaxExtensions is the most extensions one message carries.
	MaxExtensions = 255
)

// ErrMissingExtension means that a handshake message lacks an extension
// that chive requires.
var ErrMissingExtension = errors.New("cell: required extension missing")

// ExtensionType is EXT_TYPE. Tor's types are small numbers (1 and 2 for
// congestion control, 3 for subprotocol requests); chive's own start at
// 0xC0 so they cannot collide with them.
type ExtensionType uint8

// Extension types.
const (
	// ExtCircuitParams carries CircuitParams, client to relay.
	ExtCircuitParams ExtensionType = 0xC0
	// ExtCircuitParamsReply carries CircuitParamsReply, relay to client.
	ExtCircuitParamsReply ExtensionType = 0xC1
)

// String names the extension type.
func (t ExtensionType) String() string {
	switch t {
	case ExtCircuitParams:
		return "CIRCUIT_PARAMS"
	case ExtCircuitParamsReply:
		return "CIRCUIT_PARAMS_REPLY"
	}
	return fmt.Sprintf("ExtensionType(%d)", uint8(t))
}

// Extension is one extension of an ntor-v3 message.
type Extension struct {
	Type ExtensionType
	Data []byte
}

// EncodeExtensions encodes a message holding exts, in ascending order of
// type (as the spec recommends). Repeated types, more than MaxExtensions
// extensions and data longer than MaxExtensionData are errors.
func EncodeExtensions(exts []Extension) ([]byte, error) {
	if len(exts) > MaxExtensions {
		return nil, fmt.Errorf("encode extensions: %d, max %d: %w", len(exts), MaxExtensions, ErrTooLong)
	}
	sorted := slices.Clone(exts)
	slices.SortStableFunc(sorted, func(a, b Extension) int { return cmp.Compare(a.Type, b.Type) })
	n := 1
	for i, e := range sorted {
		if i > 0 && sorted[i-1].Type == e.Type {
			return nil, fmt.Errorf("encode extensions: %v twice: %w", e.Type, ErrMalformed)
		}
		if len(e.Data) > MaxExtensionData {
			return nil, fmt.Errorf("encode extension %v: %d bytes, max %d: %w", e.Type, len(e.Data), MaxExtensionData, ErrTooLong)
		}
		n += ExtensionHeaderLen + len(e.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, byte(len(sorted)))
	for _, e := range sorted {
		b = append(b, byte(e.Type), byte(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b, nil
}

// DecodeExtensions parses a message into its extensions, in wire order,
// including types this package does not know. Data is copied. A repeated
// type, a truncated extension and bytes after the last extension are
// errors.
func DecodeExtensions(msg []byte) ([]Extension, error) {
	if len(msg) < 1 {
		return nil, fmt.Errorf("decode extensions: empty message: %w", ErrShortBody)
	}
	buf := slices.Clone(msg)
	n := int(buf[0])
	p := buf[1:]
	exts := make([]Extension, 0, n)
	var seen [256]bool
	for i := range n {
		if len(p) < ExtensionHeaderLen {
			return nil, fmt.Errorf("decode extension %d of %d: %w", i+1, n, ErrShortBody)
		}
		e := Extension{Type: ExtensionType(p[0])}
		l := int(p[1])
		p = p[ExtensionHeaderLen:]
		if l > len(p) {
			return nil, fmt.Errorf("decode extension %d of %d (%v): EXT_LEN %d, %d bytes left: %w", i+1, n, e.Type, l, len(p), ErrShortBody)
		}
		if seen[e.Type] {
			return nil, fmt.Errorf("decode extension %d of %d: %v twice: %w", i+1, n, e.Type, ErrMalformed)
		}
		seen[e.Type] = true
		e.Data = p[:l:l]
		p = p[l:]
		exts = append(exts, e)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("decode extensions: %d bytes after the last extension: %w", len(p), ErrMalformed)
	}
	return exts, nil
}

// findExtension returns the data of the extension of type t in msg.
func findExtension(msg []byte, t ExtensionType) ([]byte, error) {
	exts, err := DecodeExtensions(msg)
	if err != nil {
		return nil, err
	}
	for _, e := range exts {
		if e.Type == t {
			return e.Data, nil
		}
	}
	return nil, fmt.Errorf("decode extensions: no %v: %w", t, ErrMissingExtension)
}

// ProtocolID names a chive protocol whose version is negotiated per circuit.
type ProtocolID uint8

// Protocols.
const (
	// ProtocolRelay is the cell and relay message format with CGO relay
	// crypto, as docs/PROTOCOL.md describes it. Version 1.
	ProtocolRelay ProtocolID = 1
	// ProtocolStream is the end-to-end stream header (StreamRequest,
	// StreamReply). Version 1 is StreamVersion.
	ProtocolStream ProtocolID = 2
)

// String names the protocol.
func (p ProtocolID) String() string {
	switch p {
	case ProtocolRelay:
		return "Relay"
	case ProtocolStream:
		return "Stream"
	}
	return fmt.Sprintf("ProtocolID(%d)", uint8(p))
}

// ProtocolVersion is one version of one protocol: PROTO_ID (1) | VERSION (1).
type ProtocolVersion struct {
	ID      ProtocolID
	Version uint8
}

// String formats the pair as "Name=version".
func (p ProtocolVersion) String() string { return fmt.Sprintf("%v=%d", p.ID, p.Version) }

// DefaultProtocols returns the protocol versions this package implements.
func DefaultProtocols() []ProtocolVersion {
	return []ProtocolVersion{{ProtocolRelay, 1}, {ProtocolStream, StreamVersion}}
}

// ChooseProtocols returns, for each protocol ID in supported, the highest
// version that offered also lists, sorted by ID. Protocols with no common
// version are left out.
func ChooseProtocols(offered, supported []ProtocolVersion) []ProtocolVersion {
	var chosen []ProtocolVersion
	for _, s := range supported {
		if !slices.Contains(offered, s) {
			continue
		}
		i := slices.IndexFunc(chosen, func(c ProtocolVersion) bool { return c.ID == s.ID })
		switch {
		case i < 0:
			chosen = append(chosen, s)
		case s.Version > chosen[i].Version:
			chosen[i].Version = s.Version
		}
	}
	slices.SortFunc(chosen, func(a, b ProtocolVersion) int { return cmp.Compare(a.ID, b.ID) })
	return chosen
}

// maxProtocols is the most pairs that fit in one extension after its
// fixed fields.
func maxProtocols(fixed int) int { return (MaxExtensionData - fixed - 1) / 2 }

func appendProtocols(b []byte, ps []ProtocolVersion) []byte {
	b = append(b, byte(len(ps)))
	for _, p := range ps {
		b = append(b, byte(p.ID), p.Version)
	}
	return b
}

// decodeProtocols parses NPROTO (1) | NPROTO x [PROTO_ID (1) | VERSION (1)],
// which must fill p exactly. uniqueID requires distinct IDs; otherwise
// only distinct pairs.
func decodeProtocols(p []byte, uniqueID bool) ([]ProtocolVersion, error) {
	if len(p) < 1 {
		return nil, fmt.Errorf("protocol count: %w", ErrShortBody)
	}
	n := int(p[0])
	p = p[1:]
	switch {
	case len(p) < 2*n:
		return nil, fmt.Errorf("%d protocols in %d bytes: %w", n, len(p), ErrShortBody)
	case len(p) > 2*n:
		return nil, fmt.Errorf("%d bytes after %d protocols: %w", len(p)-2*n, n, ErrMalformed)
	}
	ps := make([]ProtocolVersion, n)
	for i := range ps {
		ps[i] = ProtocolVersion{ID: ProtocolID(p[2*i]), Version: p[2*i+1]}
		for _, q := range ps[:i] {
			if q == ps[i] || (uniqueID && q.ID == ps[i].ID) {
				return nil, fmt.Errorf("protocol %v twice: %w", ps[i], ErrMalformed)
			}
		}
	}
	return ps, nil
}

func checkProtocols(ps []ProtocolVersion, fixed int, uniqueID bool) error {
	if limit := maxProtocols(fixed); len(ps) > limit {
		return fmt.Errorf("%d protocols, max %d: %w", len(ps), limit, ErrTooLong)
	}
	for i, p := range ps {
		for _, q := range ps[:i] {
			if q == p || (uniqueID && q.ID == p.ID) {
				return fmt.Errorf("protocol %v twice: %w", p, ErrMalformed)
			}
		}
	}
	return nil
}

// CircuitParams is what a client asks of each hop, in the ntor-v3 client
// message (extension ExtCircuitParams):
//
//	DELAY_CLASS (1) | NPROTO (1) | NPROTO x [PROTO_ID (1) | VERSION (1)]
//
// Protocols lists every (protocol, version) pair the client speaks; a pair
// may not repeat, but a protocol may appear with several versions.
type CircuitParams struct {
	DelayClass uint8
	Protocols  []ProtocolVersion
}

// circuitParamsFixed is DELAY_CLASS.
const circuitParamsFixed = 1

// Extension returns p as an extension.
func (p *CircuitParams) Extension() (Extension, error) {
	if err := checkProtocols(p.Protocols, circuitParamsFixed, false); err != nil {
		return Extension{}, fmt.Errorf("encode %v: %w", ExtCircuitParams, err)
	}
	b := make([]byte, 0, circuitParamsFixed+1+2*len(p.Protocols))
	b = append(b, p.DelayClass)
	return Extension{Type: ExtCircuitParams, Data: appendProtocols(b, p.Protocols)}, nil
}

// DecodeExtension parses the data of an ExtCircuitParams extension.
func (p *CircuitParams) DecodeExtension(data []byte) error {
	if len(data) < circuitParamsFixed {
		return fmt.Errorf("decode %v: %w", ExtCircuitParams, ErrShortBody)
	}
	ps, err := decodeProtocols(data[circuitParamsFixed:], false)
	if err != nil {
		return fmt.Errorf("decode %v: %w", ExtCircuitParams, err)
	}
	p.DelayClass = data[0]
	p.Protocols = ps
	return nil
}

// Encode returns the ntor-v3 client message holding p alone.
func (p *CircuitParams) Encode() ([]byte, error) {
	e, err := p.Extension()
	if err != nil {
		return nil, err
	}
	return EncodeExtensions([]Extension{e})
}

// Decode parses an ntor-v3 client message and fills p from its
// ExtCircuitParams extension, skipping others. A message without it is an
// ErrMissingExtension error.
func (p *CircuitParams) Decode(msg []byte) error {
	data, err := findExtension(msg, ExtCircuitParams)
	if err != nil {
		return err
	}
	return p.DecodeExtension(data)
}

// ParamsStatus is the relay's answer to CircuitParams.
type ParamsStatus uint8

// Parameter statuses. Any status but ParamsOK means the hop is unusable;
// the client tears the circuit down.
const (
	// ParamsOK: the delay class is served and every required protocol has
	// a common version.
	ParamsOK ParamsStatus = 0
	// ParamsDelayClassNotServed: the relay does not serve the delay class.
	ParamsDelayClassNotServed ParamsStatus = 1
	// ParamsNoCommonProtocol: some protocol the relay requires has no
	// version in common with the client.
	ParamsNoCommonProtocol ParamsStatus = 2
)

// String names the status.
func (s ParamsStatus) String() string {
	switch s {
	case ParamsOK:
		return "OK"
	case ParamsDelayClassNotServed:
		return "delay class not served"
	case ParamsNoCommonProtocol:
		return "no common protocol version"
	}
	return fmt.Sprintf("ParamsStatus(%d)", uint8(s))
}

// CircuitParamsReply is the relay's answer, in the ntor-v3 server message
// (extension ExtCircuitParamsReply):
//
//	STATUS (1) | DELAY_CLASS (1) | NPROTO (1) | NPROTO x [PROTO_ID (1) | VERSION (1)]
//
// DelayClass is the class the relay applies (on ParamsOK, the requested
// one). Protocols holds the chosen version of each protocol, each protocol
// at most once.
type CircuitParamsReply struct {
	Status     ParamsStatus
	DelayClass uint8
	Protocols  []ProtocolVersion
}

// circuitParamsReplyFixed is STATUS + DELAY_CLASS.
const circuitParamsReplyFixed = 2

// Extension returns r as an extension.
func (r *CircuitParamsReply) Extension() (Extension, error) {
	if err := checkProtocols(r.Protocols, circuitParamsReplyFixed, true); err != nil {
		return Extension{}, fmt.Errorf("encode %v: %w", ExtCircuitParamsReply, err)
	}
	b := make([]byte, 0, circuitParamsReplyFixed+1+2*len(r.Protocols))
	b = append(b, byte(r.Status), r.DelayClass)
	return Extension{Type: ExtCircuitParamsReply, Data: appendProtocols(b, r.Protocols)}, nil
}

// DecodeExtension parses the data of an ExtCircuitParamsReply extension.
// Unknown statuses are kept (and mean failure).
func (r *CircuitParamsReply) DecodeExtension(data []byte) error {
	if len(data) < circuitParamsReplyFixed {
		return fmt.Errorf("decode %v: %w", ExtCircuitParamsReply, ErrShortBody)
	}
	ps, err := decodeProtocols(data[circuitParamsReplyFixed:], true)
	if err != nil {
		return fmt.Errorf("decode %v: %w", ExtCircuitParamsReply, err)
	}
	r.Status = ParamsStatus(data[0])
	r.DelayClass = data[1]
	r.Protocols = ps
	return nil
}

// Encode returns the ntor-v3 server message holding r alone.
func (r *CircuitParamsReply) Encode() ([]byte, error) {
	e, err := r.Extension()
	if err != nil {
		return nil, err
	}
	return EncodeExtensions([]Extension{e})
}

// Decode parses an ntor-v3 server message and fills r from its
// ExtCircuitParamsReply extension, skipping others.
func (r *CircuitParamsReply) Decode(msg []byte) error {
	data, err := findExtension(msg, ExtCircuitParamsReply)
	if err != nil {
		return err
	}
	return r.DecodeExtension(data)
}

// Version returns the version r chose for protocol id; ok is false if r
// chose none.
func (r *CircuitParamsReply) Version(id ProtocolID) (v uint8, ok bool) {
	for _, p := range r.Protocols {
		if p.ID == id {
			return p.Version, true
		}
	}
	return 0, false
}

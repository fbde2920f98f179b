package cell

import (
	"encoding/binary"
	"fmt"
)

// Layout of a RELAY cell body under CGO relay crypto (Tor proposal 359):
//
//	TAG (16) | RELAY_COMMAND (1) | LENGTH (2) | DATA (LENGTH) | zero padding
//
// The tag is CGO's authenticator; the rest is the relay payload, which the
// layers of CGO encrypt. There is no stream ID and no recognized/digest field.
const (
	// TagLen is the size of the CGO tag at the start of a RELAY body.
	TagLen = 16
	// RelayPayloadLen is the part of a RELAY body after the tag.
	RelayPayloadLen = BodyLen - TagLen
	// RelayHeaderLen is RELAY_COMMAND (1) + LENGTH (2).
	RelayHeaderLen = 3
	// MaxRelayData is the largest DATA field of one relay message.
	MaxRelayData = RelayPayloadLen - RelayHeaderLen

	relayCmdOff  = TagLen
	relayLenOff  = TagLen + 1
	relayDataOff = TagLen + RelayHeaderLen
)

// RelayCommand is the command of a relay message. The numbers are Tor's.
type RelayCommand uint8

// Relay commands.
const (
	RelayData      RelayCommand = 2
	RelayEnd       RelayCommand = 3
	RelayTruncate  RelayCommand = 8
	RelayTruncated RelayCommand = 9
	RelayDrop      RelayCommand = 10
	RelayExtend2   RelayCommand = 14
	RelayExtended2 RelayCommand = 15
)

// Known reports whether c is a relay command chive understands.
func (c RelayCommand) Known() bool {
	switch c {
	case RelayData, RelayEnd, RelayTruncate, RelayTruncated, RelayDrop, RelayExtend2, RelayExtended2:
		return true
	}
	return false
}

// String returns the Tor name of the relay command.
func (c RelayCommand) String() string {
	switch c {
	case RelayData:
		return "DATA"
	case RelayEnd:
		return "END"
	case RelayTruncate:
		return "TRUNCATE"
	case RelayTruncated:
		return "TRUNCATED"
	case RelayDrop:
		return "DROP"
	case RelayExtend2:
		return "EXTEND2"
	case RelayExtended2:
		return "EXTENDED2"
	}
	return fmt.Sprintf("RelayCommand(%d)", uint8(c))
}

// EncodeRelay writes one relay message into body[TagLen:]: the command, the
// length, data, and zeroes for the rest of the payload. The tag bytes
// body[:TagLen] are left alone; relay crypto fills them. data may alias
// body. It does not allocate.
func EncodeRelay(body *[BodyLen]byte, cmd RelayCommand, data []byte) error {
	if !cmd.Known() {
		return fmt.Errorf("encode relay message: command %d: %w", uint8(cmd), ErrUnknownCommand)
	}
	if len(data) > MaxRelayData {
		return fmt.Errorf("encode relay %v: %d bytes of data, max %d: %w", cmd, len(data), MaxRelayData, ErrTooLong)
	}
	n := copy(body[relayDataOff:], data)
	clear(body[relayDataOff+n:])
	body[relayCmdOff] = byte(cmd)
	binary.BigEndian.PutUint16(body[relayLenOff:relayDataOff], uint16(n))
	return nil
}

// DecodeRelay parses the relay message in a decrypted RELAY body. The
// returned data aliases body. It rejects unknown commands
// (ErrUnknownCommand), a LENGTH above MaxRelayData (ErrTooLong) and non-zero
// bytes after DATA (ErrBadPadding): CGO authenticates the whole body, so
// only the sender can put bytes there, and chive's encoding is canonical. It
// does not allocate unless it returns an error.
func DecodeRelay(body *[BodyLen]byte) (RelayCommand, []byte, error) {
	cmd := RelayCommand(body[relayCmdOff])
	if !cmd.Known() {
		return 0, nil, fmt.Errorf("decode relay message: command %d: %w", uint8(cmd), ErrUnknownCommand)
	}
	n := int(binary.BigEndian.Uint16(body[relayLenOff:relayDataOff]))
	if n > MaxRelayData {
		return 0, nil, fmt.Errorf("decode relay %v: LENGTH %d, max %d: %w", cmd, n, MaxRelayData, ErrTooLong)
	}
	if !allZero(body[relayDataOff+n:]) {
		return 0, nil, fmt.Errorf("decode relay %v: %w", cmd, ErrBadPadding)
	}
	return cmd, body[relayDataOff : relayDataOff+n : relayDataOff+n], nil
}

// allZero reports whether every byte of b is zero, eight bytes at a time.
func allZero(b []byte) bool {
	var acc uint64
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, x := range b {
		acc |= uint64(x)
	}
	return acc == 0
}

// RelayMsg is a typed relay message.
type RelayMsg interface {
	// RelayCommand returns the message's relay command.
	RelayCommand() RelayCommand
	// Encode writes the whole message (command, length, data, zero
	// padding) into body[TagLen:], leaving the tag alone.
	Encode(body *[BodyLen]byte) error
	// Decode parses the message's DATA field, as returned by DecodeRelay.
	Decode(data []byte) error
}

// DecodeRelayMsg parses a decrypted RELAY body into a typed message. A *Data
// result aliases body; every other message is copied out of it.
func DecodeRelayMsg(body *[BodyLen]byte) (RelayMsg, error) {
	cmd, data, err := DecodeRelay(body)
	if err != nil {
		return nil, err
	}
	var m RelayMsg
	switch cmd {
	case RelayData:
		m = &Data{}
	case RelayEnd:
		m = &End{}
	case RelayTruncate:
		m = &Truncate{}
	case RelayTruncated:
		m = &Truncated{}
	case RelayDrop:
		m = &Drop{}
	case RelayExtend2:
		m = &Extend2{}
	case RelayExtended2:
		m = &Extended2{}
	default:
		// DecodeRelay accepted a command this switch does not know.
		return nil, fmt.Errorf("decode relay message: command %v: %w", cmd, ErrUnknownCommand)
	}
	if err := m.Decode(data); err != nil {
		return nil, err
	}
	return m, nil
}

// Data is a DATA message: up to MaxRelayData bytes of the circuit's byte
// pipe (the end-to-end yamux session between client and exit).
type Data struct {
	Data []byte
}

// RelayCommand returns RelayData.
func (*Data) RelayCommand() RelayCommand { return RelayData }

// Encode writes m into body.
func (m *Data) Encode(body *[BodyLen]byte) error { return EncodeRelay(body, RelayData, m.Data) }

// Decode sets m.Data to data without copying. An empty DATA message is
// allowed (it carries nothing).
func (m *Data) Decode(data []byte) error {
	m.Data = data
	return nil
}

// EndReason is the reason carried by an END message. The numbers are Tor's
// END reasons.
type EndReason uint8

// END reasons.
const (
	EndMisc           EndReason = 1  // none of the others
	EndResolveFailed  EndReason = 2  // unused by chive (streams report this end to end)
	EndConnectRefused EndReason = 3  // unused by chive
	EndExitPolicy     EndReason = 4  // unused by chive
	EndDestroy        EndReason = 5  // the circuit is being destroyed
	EndDone           EndReason = 6  // normal close: no more DATA will follow
	EndTimeout        EndReason = 7  // idle for too long
	EndNoRoute        EndReason = 8  // unused by chive
	EndHibernating    EndReason = 9  // the relay is shutting down
	EndInternal       EndReason = 10 // internal error
	EndResourceLimit  EndReason = 11 // out of resources
	EndConnReset      EndReason = 12 // unused by chive
	EndTorProtocol    EndReason = 13 // protocol violation
	EndNotDirectory   EndReason = 14 // unused by chive
)

var endReasonNames = [...]string{
	EndMisc:           "MISC",
	EndResolveFailed:  "RESOLVEFAILED",
	EndConnectRefused: "CONNECTREFUSED",
	EndExitPolicy:     "EXITPOLICY",
	EndDestroy:        "DESTROY",
	EndDone:           "DONE",
	EndTimeout:        "TIMEOUT",
	EndNoRoute:        "NOROUTE",
	EndHibernating:    "HIBERNATING",
	EndInternal:       "INTERNAL",
	EndResourceLimit:  "RESOURCELIMIT",
	EndConnReset:      "CONNRESET",
	EndTorProtocol:    "TORPROTOCOL",
	EndNotDirectory:   "NOTDIRECTORY",
}

// String returns Tor's name for the reason.
func (r EndReason) String() string {
	if int(r) < len(endReasonNames) && endReasonNames[r] != "" {
		return endReasonNames[r]
	}
	return fmt.Sprintf("EndReason(%d)", uint8(r))
}

// End is an END message: the sender will send no more DATA on this
// circuit. DATA is exactly REASON (1). Unknown reasons are kept.
type End struct {
	Reason EndReason
}

// RelayCommand returns RelayEnd.
func (*End) RelayCommand() RelayCommand { return RelayEnd }

// Encode writes m into body.
func (m *End) Encode(body *[BodyLen]byte) error {
	return EncodeRelay(body, RelayEnd, []byte{byte(m.Reason)})
}

// Decode parses an END message's data.
func (m *End) Decode(data []byte) error {
	if len(data) != 1 {
		return lengthError(RelayEnd, len(data), 1)
	}
	m.Reason = EndReason(data[0])
	return nil
}

// Truncate is a TRUNCATE message: the client asks the hop that receives it
// to destroy the circuit beyond itself. DATA is empty.
type Truncate struct{}

// RelayCommand returns RelayTruncate.
func (*Truncate) RelayCommand() RelayCommand { return RelayTruncate }

// Encode writes m into body.
func (*Truncate) Encode(body *[BodyLen]byte) error { return EncodeRelay(body, RelayTruncate, nil) }

// Decode checks that a TRUNCATE message's data is empty.
func (*Truncate) Decode(data []byte) error {
	if len(data) != 0 {
		return lengthError(RelayTruncate, len(data), 0)
	}
	return nil
}

// Truncated is a TRUNCATED message: the circuit beyond the sending hop is
// gone. DATA is exactly REASON (1), a DestroyReason.
type Truncated struct {
	Reason DestroyReason
}

// RelayCommand returns RelayTruncated.
func (*Truncated) RelayCommand() RelayCommand { return RelayTruncated }

// Encode writes m into body.
func (m *Truncated) Encode(body *[BodyLen]byte) error {
	return EncodeRelay(body, RelayTruncated, []byte{byte(m.Reason)})
}

// Decode parses a TRUNCATED message's data.
func (m *Truncated) Decode(data []byte) error {
	if len(data) != 1 {
		return lengthError(RelayTruncated, len(data), 1)
	}
	m.Reason = DestroyReason(data[0])
	return nil
}

// Drop is a DROP message: long-range padding, discarded by the hop it is
// addressed to. Drop encodes an empty DATA; on decode any DATA is accepted
// and ignored (as Tor does).
type Drop struct{}

// RelayCommand returns RelayDrop.
func (*Drop) RelayCommand() RelayCommand { return RelayDrop }

// Encode writes m into body.
func (*Drop) Encode(body *[BodyLen]byte) error { return EncodeRelay(body, RelayDrop, nil) }

// Decode accepts any data.
func (*Drop) Decode([]byte) error { return nil }

// Sizes of an EXTENDED2 message.
const (
	// Extended2HeaderLen is HLEN (2).
	Extended2HeaderLen = 2
	// MaxExtended2HData is the largest handshake an EXTENDED2 can carry.
	MaxExtended2HData = MaxRelayData - Extended2HeaderLen
)

// Extended2 is an EXTENDED2 message, the relayed CREATED2 of the new hop:
//
//	HLEN (2) | HDATA (HLEN)
//
// with nothing after HDATA.
type Extended2 struct {
	HData []byte
}

// RelayCommand returns RelayExtended2.
func (*Extended2) RelayCommand() RelayCommand { return RelayExtended2 }

// Encode writes m into body.
func (m *Extended2) Encode(body *[BodyLen]byte) error {
	if len(m.HData) > MaxExtended2HData {
		return fmt.Errorf("encode EXTENDED2: handshake of %d bytes, max %d: %w", len(m.HData), MaxExtended2HData, ErrTooLong)
	}
	p := body[relayDataOff:]
	binary.BigEndian.PutUint16(p, uint16(len(m.HData)))
	copy(p[Extended2HeaderLen:], m.HData)
	return finishRelay(body, RelayExtended2, Extended2HeaderLen+len(m.HData))
}

// Decode parses an EXTENDED2 message's data. HData is copied.
func (m *Extended2) Decode(data []byte) error {
	if len(data) < Extended2HeaderLen {
		return fmt.Errorf("decode EXTENDED2: %d bytes: %w", len(data), ErrShortBody)
	}
	n := int(binary.BigEndian.Uint16(data))
	rest := data[Extended2HeaderLen:]
	if n > len(rest) {
		return fmt.Errorf("decode EXTENDED2: HLEN %d, %d bytes left: %w", n, len(rest), ErrShortBody)
	}
	if n < len(rest) {
		return fmt.Errorf("decode EXTENDED2: %d bytes after HDATA: %w", len(rest)-n, ErrMalformed)
	}
	m.HData = append([]byte(nil), rest...)
	return nil
}

// finishRelay writes the relay header for a DATA field of n bytes already
// placed at body[TagLen+RelayHeaderLen:] and zeroes the padding after it.
func finishRelay(body *[BodyLen]byte, cmd RelayCommand, n int) error {
	if n > MaxRelayData {
		return fmt.Errorf("encode relay %v: %d bytes of data, max %d: %w", cmd, n, MaxRelayData, ErrTooLong)
	}
	body[relayCmdOff] = byte(cmd)
	binary.BigEndian.PutUint16(body[relayLenOff:relayDataOff], uint16(n))
	clear(body[relayDataOff+n:])
	return nil
}

func lengthError(cmd RelayCommand, got, want int) error {
	if got < want {
		return fmt.Errorf("decode %v: %d bytes of data, want %d: %w", cmd, got, want, ErrShortBody)
	}
	return fmt.Errorf("decode %v: %d bytes of data, want %d: %w", cmd, got, want, ErrTooLong)
}

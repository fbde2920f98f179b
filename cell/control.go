package cell

import (
	"encoding/binary"
	"fmt"
)

// Sizes of the CREATE2 and CREATED2 bodies.
const (
	// Create2HeaderLen is HTYPE (2) + HLEN (2).
	Create2HeaderLen = 4
	// MaxCreate2HData is the largest handshake that fits in a CREATE2 body.
	MaxCreate2HData = BodyLen - Create2HeaderLen
	// Created2HeaderLen is HLEN (2).
	Created2HeaderLen = 2
	// MaxCreated2HData is the largest handshake that fits in a CREATED2 body.
	MaxCreated2HData = BodyLen - Created2HeaderLen
)

// HType is a CREATE2/EXTEND2 handshake type. The numbers are Tor's.
type HType = uint16

// HTypeNtorV3 is the ntor-v3 handshake (Tor proposal 332), the only handshake
// chive speaks.
const HTypeNtorV3 HType = 3

// Create2 is the body of a CREATE2 cell:
//
//	HTYPE (2) | HLEN (2) | HDATA (HLEN) | zero padding
type Create2 struct {
	HType HType
	HData []byte
}

// Encode writes m into c, setting the command to CREATE2 and zeroing the
// padding. HData longer than MaxCreate2HData is an ErrTooLong error and
// leaves c unchanged.
func (m *Create2) Encode(c *Cell) error {
	if len(m.HData) > MaxCreate2HData {
		return fmt.Errorf("encode CREATE2: handshake of %d bytes, max %d: %w", len(m.HData), MaxCreate2HData, ErrTooLong)
	}
	c.Reset()
	c.SetCommand(CommandCreate2)
	b := c.Body()
	binary.BigEndian.PutUint16(b[0:2], m.HType)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(m.HData)))
	copy(b[Create2HeaderLen:], m.HData)
	return nil
}

// Decode parses a CREATE2 cell into m. HData is copied, so m does not alias
// c. Bytes after HDATA are padding and are ignored (Tor does the same). The
// handshake type is not checked here: a relay that does not speak it answers
// with DESTROY PROTOCOL.
func (m *Create2) Decode(c *Cell) error {
	if c.Command() != CommandCreate2 {
		return fmt.Errorf("decode CREATE2: got %v: %w", c.Command(), ErrWrongCommand)
	}
	b := c.Body()
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > MaxCreate2HData {
		return fmt.Errorf("decode CREATE2: HLEN %d, max %d: %w", n, MaxCreate2HData, ErrTooLong)
	}
	m.HType = binary.BigEndian.Uint16(b[0:2])
	m.HData = append([]byte(nil), b[Create2HeaderLen:Create2HeaderLen+n]...)
	return nil
}

// Created2 is the body of a CREATED2 cell:
//
//	HLEN (2) | HDATA (HLEN) | zero padding
type Created2 struct {
	HData []byte
}

// Encode writes m into c, setting the command to CREATED2 and zeroing the
// padding.
func (m *Created2) Encode(c *Cell) error {
	if len(m.HData) > MaxCreated2HData {
		return fmt.Errorf("encode CREATED2: handshake of %d bytes, max %d: %w", len(m.HData), MaxCreated2HData, ErrTooLong)
	}
	c.Reset()
	c.SetCommand(CommandCreated2)
	b := c.Body()
	binary.BigEndian.PutUint16(b[0:2], uint16(len(m.HData)))
	copy(b[Created2HeaderLen:], m.HData)
	return nil
}

// Decode parses a CREATED2 cell into m. HData is copied; padding is ignored.
func (m *Created2) Decode(c *Cell) error {
	if c.Command() != CommandCreated2 {
		return fmt.Errorf("decode CREATED2: got %v: %w", c.Command(), ErrWrongCommand)
	}
	b := c.Body()
	n := int(binary.BigEndian.Uint16(b[0:2]))
	if n > MaxCreated2HData {
		return fmt.Errorf("decode CREATED2: HLEN %d, max %d: %w", n, MaxCreated2HData, ErrTooLong)
	}
	m.HData = append([]byte(nil), b[Created2HeaderLen:Created2HeaderLen+n]...)
	return nil
}

// DestroyReason is the reason carried by DESTROY cells and TRUNCATED
// messages. The numbers are Tor's.
type DestroyReason uint8

// Destroy reasons.
const (
	DestroyNone          DestroyReason = 0  // no reason given
	DestroyProtocol      DestroyReason = 1  // protocol violation
	DestroyInternal      DestroyReason = 2  // internal error
	DestroyRequested     DestroyReason = 3  // a client sent TRUNCATE or DESTROY
	DestroyHibernating   DestroyReason = 4  // not currently operating
	DestroyResourceLimit DestroyReason = 5  // out of memory, sockets or circuit IDs
	DestroyConnectFailed DestroyReason = 6  // unable to reach the next relay
	DestroyORIdentity    DestroyReason = 7  // connected, but its identity was not as expected
	DestroyChannelClosed DestroyReason = 8  // the link carrying this circuit died
	DestroyFinished      DestroyReason = 9  // the circuit has expired
	DestroyTimeout       DestroyReason = 10 // circuit construction took too long
	DestroyDestroyed     DestroyReason = 11 // the circuit was destroyed without a reason
	DestroyNoSuchService DestroyReason = 12 // no such onion service (unused by chive)
)

var destroyReasonNames = [...]string{
	DestroyNone:          "NONE",
	DestroyProtocol:      "PROTOCOL",
	DestroyInternal:      "INTERNAL",
	DestroyRequested:     "REQUESTED",
	DestroyHibernating:   "HIBERNATING",
	DestroyResourceLimit: "RESOURCELIMIT",
	DestroyConnectFailed: "CONNECTFAILED",
	DestroyORIdentity:    "OR_IDENTITY",
	DestroyChannelClosed: "CHANNEL_CLOSED",
	DestroyFinished:      "FINISHED",
	DestroyTimeout:       "TIMEOUT",
	DestroyDestroyed:     "DESTROYED",
	DestroyNoSuchService: "NOSUCHSERVICE",
}

// String returns Tor's name for the reason.
func (r DestroyReason) String() string {
	if int(r) < len(destroyReasonNames) {
		return destroyReasonNames[r]
	}
	return fmt.Sprintf("DestroyReason(%d)", uint8(r))
}

// Destroy is the body of a DESTROY cell:
//
//	REASON (1) | zero padding
//
// Unknown reasons are accepted and kept (Tor does the same); the padding is
// ignored on decode.
type Destroy struct {
	Reason DestroyReason
}

// Encode writes m into c, setting the command to DESTROY.
func (m *Destroy) Encode(c *Cell) {
	c.Reset()
	c.SetCommand(CommandDestroy)
	c.Body()[0] = byte(m.Reason)
}

// Decode parses a DESTROY cell into m.
func (m *Destroy) Decode(c *Cell) error {
	if c.Command() != CommandDestroy {
		return fmt.Errorf("decode DESTROY: got %v: %w", c.Command(), ErrWrongCommand)
	}
	m.Reason = DestroyReason(c.Body()[0])
	return nil
}

// EncodePadding makes c a PADDING cell with an all-zero body. Receivers
// ignore the body of a PADDING cell, whatever it holds.
func EncodePadding(c *Cell) {
	c.Reset()
	c.SetCommand(CommandPadding)
}

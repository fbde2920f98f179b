// Package cell defines every wire format of chive below the link: the
// fixed-size cells that travel on a circuit hop, the relay messages carried
// inside RELAY cells (under CGO relay crypto), the EXTEND2 link specifiers,
// the ntor-v3 extension messages that carry circuit parameters, and the
// end-to-end stream header that opens each stream inside a circuit.
//
// The package does no cryptography and no I/O beyond reading and writing the
// stream header on an io.Reader/io.Writer. The byte layouts are written out in
// docs/PROTOCOL.md; every encoder here has a golden-bytes test that checks the
// examples printed there.
package cell

import (
	"errors"
	"fmt"
)

// Sizes of a cell. One yamux stream carries one circuit hop, so a cell has no
// circuit ID: it is a command byte followed by a fixed-size body.
const (
	// CommandLen is the size of the command field.
	CommandLen = 1
	// BodyLen is the size of a cell body (Tor's CELL_BODY_LEN).
	BodyLen = 509
	// CellLen is the size of a whole cell on the wire.
	CellLen = CommandLen + BodyLen
)

// Sentinel errors. Decoders wrap them with the step that failed; callers
// test with errors.Is.
var (
	// ErrShortBody means that a body or message ends before a field it
	// declares.
	ErrShortBody = errors.New("cell: body too short")
	// ErrTooLong means that a length field or a value exceeds what the
	// format allows.
	ErrTooLong = errors.New("cell: length too large")
	// ErrUnknownCommand means an unknown cell command or relay command.
	ErrUnknownCommand = errors.New("cell: unknown command")
	// ErrBadPadding means that bytes that must be zero are not.
	ErrBadPadding = errors.New("cell: non-zero padding")
	// ErrWrongCommand means that a typed decoder was given a cell or relay
	// message of another command.
	ErrWrongCommand = errors.New("cell: wrong command")
	// ErrMalformed means a message whose fields are individually in range
	// but whose content is invalid (a duplicate, a missing field, a bad
	// value).
	ErrMalformed = errors.New("cell: malformed message")
)

// Command is the first byte of a cell. The numbers are Tor's.
type Command uint8

// Cell commands.
const (
	CommandPadding  Command = 0
	CommandRelay    Command = 3
	CommandDestroy  Command = 4
	CommandCreate2  Command = 10
	CommandCreated2 Command = 11
)

// Known reports whether c is a command chive understands.
func (c Command) Known() bool {
	switch c {
	case CommandPadding, CommandRelay, CommandDestroy, CommandCreate2, CommandCreated2:
		return true
	}
	return false
}

// String returns the Tor name of the command.
func (c Command) String() string {
	switch c {
	case CommandPadding:
		return "PADDING"
	case CommandRelay:
		return "RELAY"
	case CommandDestroy:
		return "DESTROY"
	case CommandCreate2:
		return "CREATE2"
	case CommandCreated2:
		return "CREATED2"
	}
	return fmt.Sprintf("Command(%d)", uint8(c))
}

// Cell is one cell as it travels on a hop stream: Command (1 byte) then Body
// (BodyLen bytes). It is an array so that it can be read straight off a
// stream with io.ReadFull(r, c[:]) and passed around without allocation.
type Cell [CellLen]byte

// Command returns the cell's command byte. It does not check that the command
// is known; use Check or Command.Known for that.
func (c *Cell) Command() Command { return Command(c[0]) }

// SetCommand sets the cell's command byte.
func (c *Cell) SetCommand(cmd Command) { c[0] = byte(cmd) }

// Body returns the cell's body. It aliases the cell: writes through it change
// the cell.
func (c *Cell) Body() *[BodyLen]byte { return (*[BodyLen]byte)(c[CommandLen:]) }

// Check returns an error wrapping ErrUnknownCommand if the cell's command is
// not one chive understands. A node receiving such a cell destroys the
// circuit with DestroyProtocol.
func (c *Cell) Check() error {
	if !c.Command().Known() {
		return fmt.Errorf("cell command %d: %w", uint8(c[0]), ErrUnknownCommand)
	}
	return nil
}

// Reset zeroes the whole cell.
func (c *Cell) Reset() { *c = Cell{} }

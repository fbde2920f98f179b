package cell

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// unhex decodes hand-written hex, ignoring spaces and newlines.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad test hex %q: %v", s, err)
	}
	return b
}

// cellFromHex returns a cell whose first bytes are the given hex and whose
// remaining bytes are zero.
func cellFromHex(t testing.TB, s string) *Cell {
	t.Helper()
	b := unhex(t, s)
	if len(b) > CellLen {
		t.Fatalf("test hex is %d bytes, longer than a cell", len(b))
	}
	var c Cell
	copy(c[:], b)
	return &c
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"BodyLen", BodyLen, 509},
		{"CellLen", CellLen, 510},
		{"TagLen", TagLen, 16},
		{"RelayPayloadLen", RelayPayloadLen, 493},
		{"MaxRelayData", MaxRelayData, 490},
		{"MaxCreate2HData", MaxCreate2HData, 505},
		{"MaxCreated2HData", MaxCreated2HData, 507},
		{"MaxExtended2HData", MaxExtended2HData, 488},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestCellAccessors(t *testing.T) {
	var c Cell
	c.SetCommand(CommandRelay)
	if c[0] != 3 || c.Command() != CommandRelay {
		t.Fatalf("SetCommand(RELAY): byte %d, Command() %v", c[0], c.Command())
	}
	b := c.Body()
	b[0], b[BodyLen-1] = 0xaa, 0xbb
	if c[1] != 0xaa || c[CellLen-1] != 0xbb {
		t.Fatalf("Body() does not alias the cell: c[1]=%#x c[last]=%#x", c[1], c[CellLen-1])
	}
	c.Reset()
	if c != (Cell{}) {
		t.Fatal("Reset left non-zero bytes")
	}
}

func TestCommandString(t *testing.T) {
	for _, tc := range []struct {
		c     Command
		want  string
		known bool
	}{
		{CommandPadding, "PADDING", true},
		{CommandRelay, "RELAY", true},
		{CommandDestroy, "DESTROY", true},
		{CommandCreate2, "CREATE2", true},
		{CommandCreated2, "CREATED2", true},
		{1, "Command(1)", false},
		{9, "Command(9)", false},
		{255, "Command(255)", false},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("Command(%d).String() = %q, want %q", uint8(tc.c), got, tc.want)
		}
		if got := tc.c.Known(); got != tc.known {
			t.Errorf("Command(%d).Known() = %v, want %v", uint8(tc.c), got, tc.known)
		}
		c := Cell{byte(tc.c)}
		err := c.Check()
		if tc.known && err != nil {
			t.Errorf("Check(%v) = %v, want nil", tc.c, err)
		}
		if !tc.known && !errors.Is(err, ErrUnknownCommand) {
			t.Errorf("Check(%v) = %v, want ErrUnknownCommand", tc.c, err)
		}
	}
}

func TestDestroyReasonString(t *testing.T) {
	want := []string{"NONE", "PROTOCOL", "INTERNAL", "REQUESTED", "HIBERNATING", "RESOURCELIMIT",
		"CONNECTFAILED", "OR_IDENTITY", "CHANNEL_CLOSED", "FINISHED", "TIMEOUT", "DESTROYED", "NOSUCHSERVICE"}
	for i, w := range want {
		if got := DestroyReason(i).String(); got != w {
			t.Errorf("DestroyReason(%d) = %q, want %q", i, got, w)
		}
	}
	if got := DestroyReason(13).String(); got != "DestroyReason(13)" {
		t.Errorf("DestroyReason(13) = %q", got)
	}
}

// Golden cells. The hex is the start of the cell; the rest is zero. These
// are the examples printed in docs/PROTOCOL.md.
func TestControlCellGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		encode func(*Cell) error
		want   string
	}{
		{"CREATE2", func(c *Cell) error {
			return (&Create2{HType: HTypeNtorV3, HData: []byte{0xde, 0xad, 0xbe, 0xef}}).Encode(c)
		}, "0a 0003 0004 deadbeef"},
		{"CREATE2 empty", func(c *Cell) error {
			return (&Create2{HType: 0x1234}).Encode(c)
		}, "0a 1234 0000"},
		{"CREATED2", func(c *Cell) error {
			return (&Created2{HData: []byte{0x01, 0x02, 0x03}}).Encode(c)
		}, "0b 0003 010203"},
		{"DESTROY", func(c *Cell) error {
			(&Destroy{Reason: DestroyConnectFailed}).Encode(c)
			return nil
		}, "04 06"},
		{"PADDING", func(c *Cell) error { EncodePadding(c); return nil }, "00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Cell
			for i := range c {
				c[i] = 0x5a // Encode must overwrite every byte
			}
			if err := tc.encode(&c); err != nil {
				t.Fatal(err)
			}
			if want := cellFromHex(t, tc.want); c != *want {
				t.Errorf("got  %x\nwant %x", c[:], want[:])
			}
		})
	}
}

func TestCreate2RoundTrip(t *testing.T) {
	full := bytes.Repeat([]byte{0x42}, MaxCreate2HData)
	var c Cell
	if err := (&Create2{HType: HTypeNtorV3, HData: full}).Encode(&c); err != nil {
		t.Fatal(err)
	}
	var m Create2
	if err := m.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if m.HType != HTypeNtorV3 || !bytes.Equal(m.HData, full) {
		t.Fatalf("got HType %d, %d bytes", m.HType, len(m.HData))
	}
	c[CellLen-1] = 0 // Decode copied: changing the cell does not change m
	if m.HData[len(m.HData)-1] != 0x42 {
		t.Fatal("Create2.Decode aliases the cell")
	}
}

func TestControlDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cell   string
		decode func(*Cell) error
		want   error
	}{
		{"CREATE2 wrong command", "0b 0003 0000", func(c *Cell) error { return new(Create2).Decode(c) }, ErrWrongCommand},
		{"CREATE2 HLEN too long", "0a 0003 01fa", func(c *Cell) error { return new(Create2).Decode(c) }, ErrTooLong},
		{"CREATE2 HLEN ffff", "0a 0003 ffff", func(c *Cell) error { return new(Create2).Decode(c) }, ErrTooLong},
		{"CREATED2 wrong command", "0a 0000", func(c *Cell) error { return new(Created2).Decode(c) }, ErrWrongCommand},
		{"CREATED2 HLEN too long", "0b 01fc", func(c *Cell) error { return new(Created2).Decode(c) }, ErrTooLong},
		{"DESTROY wrong command", "03 01", func(c *Cell) error { return new(Destroy).Decode(c) }, ErrWrongCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(cellFromHex(t, tc.cell))
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestControlDecodeLimits(t *testing.T) {
	// The largest legal lengths decode; padding content is ignored.
	c := cellFromHex(t, "0a 0003 01f9")
	c[CellLen-1] = 7
	var m Create2
	if err := m.Decode(c); err != nil || len(m.HData) != MaxCreate2HData {
		t.Fatalf("CREATE2 HLEN 505: %d bytes, %v", len(m.HData), err)
	}
	c = cellFromHex(t, "0b 01fb")
	var m2 Created2
	if err := m2.Decode(c); err != nil || len(m2.HData) != MaxCreated2HData {
		t.Fatalf("CREATED2 HLEN 507: %d bytes, %v", len(m2.HData), err)
	}
	c = cellFromHex(t, "0a 0003 0001 99 ffffff")
	if err := m.Decode(c); err != nil || !bytes.Equal(m.HData, []byte{0x99}) {
		t.Fatalf("CREATE2 with non-zero padding: %x, %v", m.HData, err)
	}
	c = cellFromHex(t, "04 0d ff")
	var d Destroy
	if err := d.Decode(c); err != nil || d.Reason != 13 {
		t.Fatalf("DESTROY unknown reason: %v, %v", d.Reason, err)
	}
}

func TestControlEncodeErrors(t *testing.T) {
	var c Cell
	c[5] = 9
	before := c
	if err := (&Create2{HData: make([]byte, MaxCreate2HData+1)}).Encode(&c); !errors.Is(err, ErrTooLong) {
		t.Errorf("CREATE2 506 bytes: got %v, want ErrTooLong", err)
	}
	if err := (&Created2{HData: make([]byte, MaxCreated2HData+1)}).Encode(&c); !errors.Is(err, ErrTooLong) {
		t.Errorf("CREATED2 508 bytes: got %v, want ErrTooLong", err)
	}
	if c != before {
		t.Error("failed Encode changed the cell")
	}
}

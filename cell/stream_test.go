package cell

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

var testDNSQuery = []byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0}

// Golden stream requests; the examples in docs/PROTOCOL.md.
func TestStreamRequestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  StreamRequest
		want string
	}{
		{"CONNECT name", StreamRequest{Kind: StreamConnect, Host: "example.com", Port: 443},
			"01 01 0b 6578616d706c652e636f6d 01bb"},
		{"CONNECT IPv4", StreamRequest{Kind: StreamConnect, Host: "192.0.2.1", Port: 80},
			"01 01 09 3139322e302e322e31 0050"},
		{"CONNECT IPv6", StreamRequest{Kind: StreamConnect, Host: "2001:db8::1", Port: 80},
			"01 01 0b 323030313a6462383a3a31 0050"},
		{"RESOLVE", StreamRequest{Kind: StreamResolve, Host: "example.com"},
			"01 02 0b 6578616d706c652e636f6d"},
		{"DNS", StreamRequest{Kind: StreamDNS, DNS: testDNSQuery},
			"01 03 000c 1234 0100 0001 0000 0000 0000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteStreamRequest(&buf, &tc.req); err != nil {
				t.Fatal(err)
			}
			want := unhex(t, tc.want)
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("got %x, want %x", buf.Bytes(), want)
			}
			// Reading takes exactly the request and leaves what follows.
			buf.WriteString("after")
			got, err := ReadStreamRequest(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.req) {
				t.Errorf("read %+v, want %+v", *got, tc.req)
			}
			if buf.String() != "after" {
				t.Errorf("left %q in the stream, want %q", buf.String(), "after")
			}
		})
	}
}

func TestStreamRequestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		want   error
		status StreamStatus
	}{
		{"empty stream", "", io.EOF, StatusProtocolError},
		{"one byte", "01", io.ErrUnexpectedEOF, StatusProtocolError},
		{"version 0", "00 01", ErrUnsupportedVersion, StatusProtocolError},
		{"version 2", "02 01 01 61 0050", ErrUnsupportedVersion, StatusProtocolError},
		{"kind 0", "01 00", ErrUnknownCommand, StatusCommandNotSupported},
		{"kind 4", "01 04 01 61", ErrUnknownCommand, StatusCommandNotSupported},
		{"no host length", "01 01", io.ErrUnexpectedEOF, StatusProtocolError},
		{"host cut", "01 01 05 6162", io.ErrUnexpectedEOF, StatusProtocolError},
		{"port cut", "01 01 01 61 00", io.ErrUnexpectedEOF, StatusProtocolError},
		{"empty host", "01 01 00 0050", ErrMalformed, StatusProtocolError},
		{"empty RESOLVE host", "01 02 00", ErrMalformed, StatusProtocolError},
		{"NUL in host", "01 01 03 610062 0050", ErrMalformed, StatusProtocolError},
		{"host:port", "01 01 06 613a38303830 0050", ErrMalformed, StatusProtocolError},
		{"bracketed IPv6", "01 01 05 5b3a3a315d 0050", ErrMalformed, StatusProtocolError},
		{"zoned IPv6", "01 01 09 666538303a3a31256d 0050", ErrMalformed, StatusProtocolError},
		{"port 0", "01 01 01 61 0000", ErrMalformed, StatusProtocolError},
		{"DNS no length", "01 03 00", io.ErrUnexpectedEOF, StatusProtocolError},
		{"DNS too short", "01 03 000b 0000000000000000000000", ErrShortBody, StatusProtocolError},
		{"DNS empty", "01 03 0000", ErrShortBody, StatusProtocolError},
		{"DNS cut", "01 03 000c 00", io.ErrUnexpectedEOF, StatusProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ReadStreamRequest(bytes.NewReader(unhex(t, tc.in)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %+v, %v; want %v", req, err, tc.want)
			}
			if got := StatusForRequestError(err); got != tc.status {
				t.Errorf("StatusForRequestError = %v, want %v", got, tc.status)
			}
		})
	}
	// The longest host is fine; its bytes are not checked beyond NUL.
	host := strings.Repeat("a", MaxHostLen)
	in := append(unhex(t, "01 02 ff"), host...)
	if req, err := ReadStreamRequest(bytes.NewReader(in)); err != nil || req.Host != host {
		t.Errorf("255-byte host: %v", err)
	}
	if StatusForRequestError(nil) != StatusSucceeded {
		t.Error("StatusForRequestError(nil) is not success")
	}
}

func TestStreamRequestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  StreamRequest
		want error
	}{
		{"kind 0", StreamRequest{Host: "a", Port: 1}, ErrUnknownCommand},
		{"empty host", StreamRequest{Kind: StreamConnect, Port: 1}, ErrMalformed},
		{"long host", StreamRequest{Kind: StreamResolve, Host: strings.Repeat("a", 256)}, ErrTooLong},
		{"NUL", StreamRequest{Kind: StreamResolve, Host: "a\x00b"}, ErrMalformed},
		{"host:port", StreamRequest{Kind: StreamConnect, Host: "a:1", Port: 1}, ErrMalformed},
		{"[::1]", StreamRequest{Kind: StreamConnect, Host: "[::1]", Port: 1}, ErrMalformed},
		{"port 0", StreamRequest{Kind: StreamConnect, Host: "a"}, ErrMalformed},
		{"DNS short", StreamRequest{Kind: StreamDNS, DNS: make([]byte, 11)}, ErrShortBody},
		{"DNS long", StreamRequest{Kind: StreamDNS, DNS: make([]byte, 65536)}, ErrTooLong},
	} {
		var buf bytes.Buffer
		if err := WriteStreamRequest(&buf, &tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: wrote %d bytes on error", tc.name, buf.Len())
		}
	}
	// The longest DNS message is fine.
	var buf bytes.Buffer
	if err := WriteStreamRequest(&buf, &StreamRequest{Kind: StreamDNS, DNS: make([]byte, MaxDNSLen)}); err != nil {
		t.Fatal(err)
	}
	if req, err := ReadStreamRequest(&buf); err != nil || len(req.DNS) != MaxDNSLen {
		t.Errorf("65535-byte DNS: %v", err)
	}
}

func TestStreamRequestHostAddr(t *testing.T) {
	for _, tc := range []struct {
		host string
		want string
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"2001:db8::1", "2001:db8::1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"example.com", ""},
		{"fe80::1%eth0", ""},
	} {
		a, ok := (&StreamRequest{Host: tc.host}).HostAddr()
		if tc.want == "" {
			if ok {
				t.Errorf("%s: HostAddr() = %v, want none", tc.host, a)
			}
			continue
		}
		if !ok || a != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: HostAddr() = %v, %v; want %s", tc.host, a, ok, tc.want)
		}
	}
}

// Golden stream replies; the examples in docs/PROTOCOL.md.
func TestStreamReplyGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind StreamKind
		rep  StreamReply
		want string
	}{
		{"CONNECT IPv4", StreamConnect, StreamReply{Addr: mustAddrPort(t, "93.184.216.34:443")},
			"00 04 5db8d822 01bb"},
		{"CONNECT IPv6", StreamConnect, StreamReply{Addr: mustAddrPort(t, "[2001:db8::1]:443")},
			"00 06 20010db8000000000000000000000001 01bb"},
		{"CONNECT no address", StreamConnect, StreamReply{}, "00 00 0000"},
		{"RESOLVE", StreamResolve, StreamReply{Addrs: []ResolvedAddr{
			{Addr: netip.MustParseAddr("192.0.2.1"), TTL: 300},
			{Addr: netip.MustParseAddr("2001:db8::1"), TTL: 3600},
		}}, "00 02 04 c0000201 0000012c 06 20010db8000000000000000000000001 00000e10"},
		{"DNS", StreamDNS, StreamReply{DNS: testDNSQuery}, "00 000c 123401000001000000000000"},
		{"refused", StreamConnect, StreamReply{Status: StatusConnectionRefused}, "05"},
		{"resolve failed", StreamResolve, StreamReply{Status: StatusResolveFailed}, "10"},
		{"exit limit", StreamDNS, StreamReply{Status: StatusExitLimit}, "11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteStreamReply(&buf, tc.kind, &tc.rep); err != nil {
				t.Fatal(err)
			}
			want := unhex(t, tc.want)
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("got %x, want %x", buf.Bytes(), want)
			}
			buf.WriteString("after")
			got, err := ReadStreamReply(&buf, tc.kind)
			if tc.rep.Status != StatusSucceeded {
				var se *StreamError
				if !errors.As(err, &se) || se.Status != tc.rep.Status {
					t.Fatalf("error %v, want StreamError %v", err, tc.rep.Status)
				}
				if !errors.Is(err, &StreamError{Status: tc.rep.Status}) || errors.Is(err, &StreamError{Status: StatusGeneralFailure}) {
					t.Errorf("errors.Is on %v does not match by status", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.rep) {
				t.Errorf("read %+v, want %+v", *got, tc.rep)
			}
			if buf.String() != "after" {
				t.Errorf("left %q in the stream, want %q", buf.String(), "after")
			}
		})
	}
}

func TestStreamReplyMappedAddress(t *testing.T) {
	rep := StreamReply{Addr: mustAddrPort(t, "[::ffff:192.0.2.1]:80")}
	b, err := AppendStreamReply(nil, StreamConnect, &rep)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "00 04 c0000201 0050"); !bytes.Equal(b, want) {
		t.Errorf("got %x, want %x", b, want)
	}
}

func TestStreamReplyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind StreamKind
		in   string
		want error
	}{
		{"empty", StreamConnect, "", io.EOF},
		{"CONNECT no type", StreamConnect, "00", io.ErrUnexpectedEOF},
		{"CONNECT type 5", StreamConnect, "00 05", ErrMalformed},
		{"CONNECT addr cut", StreamConnect, "00 04 c000", io.ErrUnexpectedEOF},
		{"CONNECT port cut", StreamConnect, "00 04 c0000201 00", io.ErrUnexpectedEOF},
		{"CONNECT port without address", StreamConnect, "00 00 0050", ErrMalformed},
		{"CONNECT mapped IPv6", StreamConnect, "00 06 00000000000000000000ffffc0000201 0050", ErrMalformed},
		{"RESOLVE no count", StreamResolve, "00", io.ErrUnexpectedEOF},
		{"RESOLVE count 0", StreamResolve, "00 00", ErrMalformed},
		{"RESOLVE type 0", StreamResolve, "00 01 00 00000000", ErrMalformed},
		{"RESOLVE TTL cut", StreamResolve, "00 01 04 c0000201 0000", io.ErrUnexpectedEOF},
		{"RESOLVE second missing", StreamResolve, "00 02 04 c0000201 0000012c", io.ErrUnexpectedEOF},
		{"DNS no length", StreamDNS, "00 00", io.ErrUnexpectedEOF},
		{"DNS short", StreamDNS, "00 0001 00", ErrShortBody},
		{"DNS cut", StreamDNS, "00 000c 0000", io.ErrUnexpectedEOF},
		{"unknown kind", 9, "00", ErrUnknownCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := ReadStreamReply(bytes.NewReader(unhex(t, tc.in)), tc.kind)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %+v, %v; want %v", rep, err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		kind StreamKind
		rep  StreamReply
		want error
	}{
		{"CONNECT port without address", StreamConnect, StreamReply{Addr: netip.AddrPortFrom(netip.Addr{}, 80)}, ErrMalformed},
		{"CONNECT zoned", StreamConnect, StreamReply{Addr: netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 80)}, ErrMalformed},
		{"RESOLVE none", StreamResolve, StreamReply{}, ErrMalformed},
		{"RESOLVE invalid", StreamResolve, StreamReply{Addrs: []ResolvedAddr{{}}}, ErrMalformed},
		{"RESOLVE 256", StreamResolve, StreamReply{Addrs: make([]ResolvedAddr, 256)}, ErrMalformed},
		{"DNS short", StreamDNS, StreamReply{DNS: make([]byte, 11)}, ErrMalformed},
		{"DNS long", StreamDNS, StreamReply{DNS: make([]byte, 65536)}, ErrMalformed},
		{"unknown kind", 0, StreamReply{}, ErrUnknownCommand},
	} {
		var buf bytes.Buffer
		if err := WriteStreamReply(&buf, tc.kind, &tc.rep); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: wrote %d bytes on error", tc.name, buf.Len())
		}
	}
	// An error reply to an unknown kind is one byte.
	var buf bytes.Buffer
	if err := WriteStreamReply(&buf, 0, &StreamReply{Status: StatusCommandNotSupported}); err != nil || buf.String() != "\x07" {
		t.Errorf("error reply to kind 0: %x, %v", buf.Bytes(), err)
	}
}

func TestStreamStatus(t *testing.T) {
	for _, tc := range []struct {
		s    StreamStatus
		str  string
		code byte
	}{
		{StatusSucceeded, "succeeded", 0},
		{StatusGeneralFailure, "general failure", 1},
		{StatusNotAllowed, "not allowed by exit policy", 2},
		{StatusNetworkUnreachable, "network is unreachable", 3},
		{StatusHostUnreachable, "host unreachable", 4},
		{StatusConnectionRefused, "connection refused", 5},
		{StatusTimeout, "timed out", 6},
		{StatusCommandNotSupported, "command not supported", 7},
		{StatusAddressNotSupported, "address type not supported", 8},
		{StatusResolveFailed, "could not resolve host", 4},
		{StatusExitLimit, "exit stream limit reached", 1},
		{StatusProtocolError, "stream protocol error", 1},
		{9, "StreamStatus(9)", 1},
		{0xff, "StreamStatus(255)", 1},
	} {
		if got := tc.s.String(); got != tc.str {
			t.Errorf("StreamStatus(%d).String() = %q, want %q", uint8(tc.s), got, tc.str)
		}
		if got := tc.s.SOCKSCode(); got != tc.code {
			t.Errorf("StreamStatus(%d).SOCKSCode() = %d, want %d", uint8(tc.s), got, tc.code)
		}
		err := tc.s.Err()
		if tc.s == StatusSucceeded {
			if err != nil {
				t.Errorf("StatusSucceeded.Err() = %v", err)
			}
			continue
		}
		if want := "chive stream: " + tc.str; err == nil || err.Error() != want {
			t.Errorf("StreamStatus(%d).Err() = %v, want %q", uint8(tc.s), err, want)
		}
	}
	if got := StreamKind(3).String(); got != "DNS" {
		t.Errorf("StreamKind(3) = %q", got)
	}
	if got := StreamKind(4).String(); got != "StreamKind(4)" {
		t.Errorf("StreamKind(4) = %q", got)
	}
}

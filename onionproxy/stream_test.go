package onionproxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/chive-net/chive/cell"
)

func TestParseClassUsername(t *testing.T) {
	for _, tc := range []struct {
		user  string
		class uint8
		ok    bool
		err   error
	}{
		{"alice", 0, false, nil},
		{"", 0, false, nil},
		{"Class=1", 0, false, nil},
		{"class=0", 0, true, nil},
		{"class=2", 2, true, nil},
		{"class=2:alice", 2, true, nil},
		{"class=255:x:y", 255, true, nil},
		{"class=256", 0, true, ErrBadClassPrefix},
		{"class=", 0, true, ErrBadClassPrefix},
		{"class=:x", 0, true, ErrBadClassPrefix},
		{"class=x", 0, true, ErrBadClassPrefix},
		{"class=007", 0, true, ErrBadClassPrefix},
		{"class=+7", 0, true, ErrBadClassPrefix},
		{"class=-1", 0, true, ErrBadClassPrefix},
	} {
		class, ok, err := parseClassUsername(tc.user)
		if class != tc.class || ok != tc.ok || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%q: got %d %v %v, want %d %v %v", tc.user, class, ok, err, tc.class, tc.ok, tc.err)
		}
	}
}

func TestIsolationKey(t *testing.T) {
	base := isolation{listener: "socks|127.0.0.1:9050", client: "127.0.0.1"}
	keys := map[string]string{}
	add := func(name string, i isolation) {
		k := i.key()
		if prev, dup := keys[k]; dup {
			t.Errorf("%s and %s share the key %q", name, prev, k)
		}
		keys[k] = name
	}
	add("no auth", base)
	a := base
	a.hasAuth, a.user, a.pass = true, "", ""
	add("empty credentials", a)
	b := base
	b.hasAuth, b.user, b.pass = true, "a|p1:b", ""
	add("user a|p1:b", b)
	c := base
	c.hasAuth, c.user, c.pass = true, "a", "b"
	add("user a pass b", c)
	d := base
	d.class = 1
	add("class 1", d)
	e := base
	e.client = "127.0.0.2"
	add("other client", e)
	f := base
	f.listener = "http|127.0.0.1:9050"
	add("other front-end", f)
}

func TestSOCKSCodeMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want byte
	}{
		{&cell.StreamError{Status: cell.StatusConnectionRefused}, socksConnectionRefused},
		{fmt.Errorf("wrapped: %w", &cell.StreamError{Status: cell.StatusNotAllowed}), socksNotAllowed},
		{&cell.StreamError{Status: cell.StatusResolveFailed}, socksHostUnreachable},
		{&cell.StreamError{Status: cell.StatusTimeout}, socksTTLExpired},
		{&cell.StreamError{Status: cell.StatusExitLimit}, socksGeneralFailure},
		{ErrStreamTimeout, socksTTLExpired},
		{context.DeadlineExceeded, socksTTLExpired},
		{os.ErrDeadlineExceeded, socksTTLExpired},
		{fmt.Errorf("%w: x", ErrNoExit), socksNotAllowed},
		{ErrBadClassPrefix, socksNotAllowed},
		{ErrBadDestination, socksHostUnreachable},
		{ErrNoConsensus, socksGeneralFailure},
		{ErrNoPath, socksGeneralFailure},
		{errors.New("circuit destroyed"), socksGeneralFailure},
	} {
		if got := socksCode(tc.err); got != tc.want {
			t.Errorf("%v: code %d, want %d", tc.err, got, tc.want)
		}
	}
}

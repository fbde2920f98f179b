package link

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chive-net/chive/layercrypt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newKey(t testing.TB) *layercrypt.IdentityKey {
	t.Helper()
	k, err := layercrypt.GenerateIdentityKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// listen starts a link listener on loopback that echoes every stream.
func listen(t testing.TB, cfg *Config) (*Listener, chan *Link) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Link, 16)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			lk, err := l.Accept(ctx)
			if err != nil {
				return
			}
			got <- lk
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					s, err := lk.AcceptStream()
					if err != nil {
						return
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						io.Copy(s, s)
						s.Close()
					}()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		l.Close()
		for {
			select {
			case lk := <-got:
				lk.Close()
				continue
			default:
			}
			break
		}
		wg.Wait()
	})
	return l, got
}

func echo(t testing.TB, lk *Link, msg []byte) {
	t.Helper()
	s, err := lk.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go s.Write(msg)
	got := make([]byte, len(msg))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo returned different bytes")
	}
}

func TestDialAuthenticates(t *testing.T) {
	srvKey := newKey(t)
	l, inbound := listen(t, &Config{Identity: srvKey})

	// An anonymous client: the responder sees no identity.
	lk, err := Dial(context.Background(), l.Addr().String(), srvKey.ID(), &Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if !lk.Peer().Equal(srvKey.ID()) {
		t.Fatalf("Peer() = %v, want %v", lk.Peer(), srvKey.ID())
	}
	echo(t, lk, bytes.Repeat([]byte("chive"), 10000))
	in := <-inbound
	if !in.Peer().IsZero() {
		t.Fatalf("responder saw identity %v from an anonymous client", in.Peer())
	}

	// A relay initiator presents its identity.
	relayKey := newKey(t)
	lk2, err := Dial(context.Background(), l.Addr().String(), srvKey.ID(), &Config{Identity: relayKey})
	if err != nil {
		t.Fatal(err)
	}
	defer lk2.Close()
	in2 := <-inbound
	if !in2.Peer().Equal(relayKey.ID()) {
		t.Fatalf("responder saw %v, want the initiator's %v", in2.Peer(), relayKey.ID())
	}
	echo(t, lk2, []byte("x"))
}

func TestDialWrongIdentity(t *testing.T) {
	srvKey := newKey(t)
	l, _ := listen(t, &Config{Identity: srvKey})
	other := newKey(t)
	_, err := Dial(context.Background(), l.Addr().String(), other.ID(), &Config{})
	if !errors.Is(err, ErrWrongIdentity) {
		t.Fatalf("Dial with the wrong pinned identity: err = %v, want ErrWrongIdentity", err)
	}
	// The listener still serves the right client afterwards.
	lk, err := Dial(context.Background(), l.Addr().String(), srvKey.ID(), &Config{})
	if err != nil {
		t.Fatal(err)
	}
	echo(t, lk, []byte("still here"))
	lk.Close()
}

func TestHostilePeersDoNotBlockListener(t *testing.T) {
	srvKey := newKey(t)
	l, _ := listen(t, &Config{Identity: srvKey, HandshakeTimeout: 300 * time.Millisecond})
	addr := l.Addr().String()

	// Garbage, a silent connection, and a TLS client with the wrong ALPN.
	garbage, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	garbage.Write(bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff}, 100))
	defer garbage.Close()
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	lk, err := Dial(context.Background(), addr, srvKey.ID(), &Config{})
	if err != nil {
		t.Fatalf("honest client behind hostile ones: %v", err)
	}
	echo(t, lk, []byte("ok"))
	lk.Close()

	// The silent connection is closed by the responder after the deadline.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("responder kept a silent connection open past its handshake deadline")
		}
	}
}

func TestDialTimesOut(t *testing.T) {
	// A TCP listener that never speaks TLS.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	start := time.Now()
	_, err = Dial(context.Background(), ln.Addr().String(), newKey(t).ID(), &Config{HandshakeTimeout: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("Dial to a silent server succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Dial took %v despite a 200ms handshake timeout", time.Since(start))
	}
}

func TestLinkPadding(t *testing.T) {
	srvKey := newKey(t)
	cfg := &Config{Identity: srvKey, PaddingMin: 10 * time.Millisecond, PaddingMax: 20 * time.Millisecond}
	l, inbound := listen(t, cfg)
	lk, err := Dial(context.Background(), l.Addr().String(), srvKey.ID(), &Config{PaddingMin: 10 * time.Millisecond, PaddingMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	in := <-inbound
	deadline := time.Now().Add(10 * time.Second)
	for lk.PaddingReceived() < 2*paddingFrameLen || in.PaddingReceived() < 2*paddingFrameLen {
		if time.Now().After(deadline) {
			t.Fatalf("padding received: initiator %d, responder %d bytes; want at least two frames each",
				lk.PaddingReceived(), in.PaddingReceived())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lk.PaddingReceived()%paddingFrameLen != 0 {
		t.Fatalf("padding arrived in %d bytes, not whole %d-byte frames", lk.PaddingReceived(), paddingFrameLen)
	}
}

func TestManagerReusesLinks(t *testing.T) {
	srvKey := newKey(t)
	l, _ := listen(t, &Config{Identity: srvKey})
	m := NewManager(&Config{Identity: newKey(t)})
	defer m.Close()

	var wg sync.WaitGroup
	links := make([]*Link, 8)
	errs := make([]error, 8)
	for i := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			links[i], errs[i] = m.Get(context.Background(), srvKey.ID(), l.Addr().String())
		}()
	}
	wg.Wait()
	for i := range links {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if links[i] != links[0] {
			t.Fatalf("Get #%d returned another link; want one shared link", i)
		}
	}
	if m.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", m.Len())
	}
	echo(t, links[0], []byte("shared"))

	// Once closed, the link is forgotten and the next Get dials anew.
	links[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for m.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	again, err := m.Get(context.Background(), srvKey.ID(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if again == links[0] {
		t.Fatal("Get returned a closed link")
	}
	echo(t, again, []byte("fresh"))

	// A wrong address for an identity fails without poisoning the manager.
	if _, err := m.Get(context.Background(), newKey(t).ID(), l.Addr().String()); !errors.Is(err, ErrWrongIdentity) {
		t.Fatalf("Get(wrong identity) err = %v, want ErrWrongIdentity", err)
	}
}

func TestManyStreamsManySmallWrites(t *testing.T) {
	srvKey := newKey(t)
	l, _ := listen(t, &Config{Identity: srvKey})
	lk, err := Dial(context.Background(), l.Addr().String(), srvKey.ID(), &Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	var wg sync.WaitGroup
	errc := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := lk.OpenStream()
			if err != nil {
				errc <- err
				return
			}
			defer s.Close()
			want := make([]byte, 510*200)
			rand.Read(want)
			go func() {
				for off := 0; off < len(want); off += 510 {
					if _, err := s.Write(want[off : off+510]); err != nil {
						return
					}
				}
			}()
			got := make([]byte, len(want))
			s.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.ReadFull(s, got); err != nil {
				errc <- err
				return
			}
			if !bytes.Equal(got, want) {
				errc <- errors.New("stream returned different bytes")
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// BenchmarkLinkThroughput pushes bulk data through one stream of a link on
// loopback (TLS 1.3 + yamux), in cell-sized and in 16 KiB writes, beside a
// plain TCP connection for scale.
func BenchmarkLinkThroughput(b *testing.B) {
	for _, size := range []int{510, 16 << 10} {
		b.Run(fmt.Sprintf("link/write=%d", size), func(b *testing.B) {
			srvKey := newKey(b)
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			l, err := Listen(ln, &Config{Identity: srvKey})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				in, err := l.Accept(context.Background())
				if err != nil {
					return
				}
				defer in.Close()
				s, err := in.AcceptStream()
				if err != nil {
					return
				}
				io.Copy(io.Discard, s)
			}()
			lk, err := Dial(context.Background(), l.Addr().String(), srvKey.ID(), &Config{})
			if err != nil {
				b.Fatal(err)
			}
			s, _ := lk.OpenStream()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			s.Close()
			lk.Close()
			<-done
		})
	}
	b.Run("tcp/write=16384", func(b *testing.B) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, c)
			c.Close()
		}()
		c, _ := net.Dial("tcp", ln.Addr().String())
		buf := make([]byte, 16<<10)
		b.SetBytes(int64(len(buf)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.Write(buf)
		}
		b.StopTimer()
		c.Close()
		<-done
	})
}

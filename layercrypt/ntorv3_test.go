package layercrypt

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// loadNtor3KAT reads a testdata file of `NAME = "hex"` lines (# starts a
// comment line).
func loadNtor3KAT(t testing.TB, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[string][]byte)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, quoted, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("%s:%d: no ` = ` in %q", file, n, line)
		}
		s, err := strconv.Unquote(quoted)
		if err != nil {
			t.Fatalf("%s:%d: %v", file, n, err)
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("%s:%d: %v", file, n, err)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("%s:%d: %s given twice", file, n, name)
		}
		out[name] = b
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ntor3Vectors holds proposal 332's test vectors, parsed.
type ntor3Vectors struct {
	raw             map[string][]byte
	b               *OnionPrivateKey
	B               OnionPublicKey
	id              RelayID
	x, y            [32]byte
	cm, sm, ver     []byte
	onionskin, resp []byte
}

func loadNtor3Vectors(t testing.TB) *ntor3Vectors {
	t.Helper()
	raw := loadNtor3KAT(t, "ntorv3_vectors.txt")
	for _, name := range []string{"b", "B", "ID", "x", "X", "CM", "VER", "y", "Y", "SM",
		"ENC_K1", "MAC_K1", "msg_mac", "key_seed", "verify", "ENC_KEY (server)", "AUTH",
		"client_handshake", "server_handshake", "KEYSTREAM"} {
		if _, ok := raw[name]; !ok {
			t.Fatalf("ntorv3_vectors.txt lacks %s", name)
		}
	}
	if len(raw) != 20 {
		t.Fatalf("ntorv3_vectors.txt has %d values, want 20", len(raw))
	}
	v := &ntor3Vectors{raw: raw, cm: raw["CM"], sm: raw["SM"], ver: raw["VER"],
		onionskin: raw["client_handshake"], resp: raw["server_handshake"]}
	var err error
	if v.b, err = OnionKeyFromBytes(raw["b"]); err != nil {
		t.Fatal(err)
	}
	v.B = v.b.Public()
	if v.id, err = RelayIDFromBytes(raw["ID"]); err != nil {
		t.Fatal(err)
	}
	copy(v.x[:], raw["x"])
	copy(v.y[:], raw["y"])
	return v
}

func (v *ntor3Vectors) client(t testing.TB) *NtorV3Client {
	t.Helper()
	x := v.x
	c, _, err := ntor3NewClient(&x, v.id, v.B, v.ver, v.cm)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (v *ntor3Vectors) server(onionskin []byte, respond func([]byte) ([]byte, error)) ([]byte, *KeyStream, error) {
	y := v.y
	return ntor3Server(&y, nil, v.id, []*OnionPrivateKey{v.b}, v.ver, onionskin, respond)
}

func readKeys(t testing.TB, ks *KeyStream, chunks ...int) []byte {
	t.Helper()
	var out []byte
	for _, n := range chunks {
		p := make([]byte, n)
		if got, err := ks.Read(p); got != n || err != nil {
			t.Fatalf("KeyStream.Read(%d) = %d, %v", n, got, err)
		}
		out = append(out, p...)
	}
	return out
}

func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

// TestNtorV3PublishedVectors reproduces every value of proposal 332's
// "X.2: Test vectors": the public keys, each intermediate value, the two
// messages, the decrypted messages and the first 256 key-stream bytes, from
// the client's and from the server's side.
func TestNtorV3PublishedVectors(t *testing.T) { x25519Impls(t, testNtorV3PublishedVectors) }

func testNtorV3PublishedVectors(t *testing.T) {
	v := loadNtor3Vectors(t)
	raw := v.raw

	// Inputs.
	checkBytes(t, "B = public(b)", v.B[:], raw["B"])
	var X, Y [32]byte
	ntor3X25519Base(&X, &v.x)
	ntor3X25519Base(&Y, &v.y)
	checkBytes(t, "X = public(x)", X[:], raw["X"])
	checkBytes(t, "Y = public(y)", Y[:], raw["Y"])

	// Intermediate values, each computed as the handshake computes it.
	var bx, xb, xy, yx [32]byte
	if !ntor3X25519(&bx, &v.x, (*[32]byte)(&v.B)) || !ntor3X25519(&xb, &v.b.secret, &X) ||
		!ntor3X25519(&xy, &v.y, &X) || !ntor3X25519(&yx, &v.x, &Y) {
		t.Fatal("X25519 reported a low-order point")
	}
	if bx != xb || xy != yx {
		t.Fatal("Diffie-Hellman results disagree")
	}
	var encK1, macK1, msgMAC, seed, verify, encKey, auth [32]byte
	ntor3Phase1Keys(&encK1, &macK1, &bx, &v.id, &v.B, &X, v.ver)
	checkBytes(t, "ENC_K1", encK1[:], raw["ENC_K1"])
	checkBytes(t, "MAC_K1", macK1[:], raw["MAC_K1"])
	encCM := make([]byte, len(v.cm))
	ntor3Crypt(&encK1, encCM, v.cm)
	ntor3MsgMAC(&msgMAC, &macK1, &v.id, &v.B, &X, encCM)
	checkBytes(t, "msg_mac", msgMAC[:], raw["msg_mac"])
	ntor3KeySeedVerify(&seed, &verify, &xy, &xb, &v.id, &v.B, &X, &Y, v.ver)
	checkBytes(t, "key_seed", seed[:], raw["key_seed"])
	checkBytes(t, "verify", verify[:], raw["verify"])
	ks := ntor3FinalKeys(&encKey, &seed)
	checkBytes(t, "ENC_KEY (server)", encKey[:], raw["ENC_KEY (server)"])
	checkBytes(t, "KEYSTREAM", readKeys(t, ks, 256), raw["KEYSTREAM"])
	encSM := make([]byte, len(v.sm))
	ntor3Crypt(&encKey, encSM, v.sm)
	ntor3Auth(&auth, &verify, &v.id, &v.B, &Y, &X, &msgMAC, encSM)
	checkBytes(t, "AUTH", auth[:], raw["AUTH"])
	checkBytes(t, "client_handshake (assembled)",
		bytes.Join([][]byte{v.id[:], v.B[:], X[:], encCM, msgMAC[:]}, nil), v.onionskin)
	checkBytes(t, "server_handshake (assembled)", bytes.Join([][]byte{Y[:], auth[:], encSM}, nil), v.resp)

	// The whole handshake through the exported API, with the ephemeral
	// keys fed in as the randomness.
	c, onionskin, err := NewNtorV3Client(bytes.NewReader(v.x[:]), v.id, v.B, v.ver, v.cm)
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, "client onionskin", onionskin, v.onionskin)

	calls := 0
	reply, sks, err := NtorV3Server(bytes.NewReader(v.y[:]), v.id, []*OnionPrivateKey{v.b}, v.ver, v.onionskin,
		func(cm []byte) ([]byte, error) {
			calls++
			checkBytes(t, "CM decrypted by the server", cm, v.cm)
			return v.sm, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("respond called %d times, want 1", calls)
	}
	checkBytes(t, "server reply", reply, v.resp)
	checkBytes(t, "server KEYSTREAM", readKeys(t, sks, 256), raw["KEYSTREAM"])

	sm, cks, err := c.Finish(v.resp)
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, "SM decrypted by the client", sm, v.sm)
	checkBytes(t, "client KEYSTREAM", readKeys(t, cks, 1, 7, 100, 148), raw["KEYSTREAM"])
}

func TestNtorV3X25519RFC7748(t *testing.T) { x25519Impls(t, testNtorV3X25519RFC7748) }

func testNtorV3X25519RFC7748(t *testing.T) {
	v := loadNtor3KAT(t, "ntorv3_x25519_rfc7748.txt")
	for _, i := range []string{"1", "2"} {
		var out [32]byte
		if !ntor3X25519(&out, (*[32]byte)(v["scalar"+i]), (*[32]byte)(v["u"+i])) {
			t.Fatalf("vector %s: reported low order", i)
		}
		checkBytes(t, "RFC 7748 5.2 vector "+i, out[:], v["out"+i])
	}

	var k, u, next [32]byte
	k[0], u[0] = 9, 9
	for i := 1; i <= 1000; i++ {
		ntor3X25519(&next, &k, &u)
		u, k = k, next
		if i == 1 {
			checkBytes(t, "RFC 7748 5.2 iterated x1", k[:], v["iterated1"])
		}
	}
	checkBytes(t, "RFC 7748 5.2 iterated x1000", k[:], v["iterated1000"])

	var ap, bp, s1, s2 [32]byte
	ntor3X25519Base(&ap, (*[32]byte)(v["alice_private"]))
	ntor3X25519Base(&bp, (*[32]byte)(v["bob_private"]))
	checkBytes(t, "RFC 7748 6.1 Alice's public key", ap[:], v["alice_public"])
	checkBytes(t, "RFC 7748 6.1 Bob's public key", bp[:], v["bob_public"])
	ntor3X25519(&s1, (*[32]byte)(v["alice_private"]), &bp)
	ntor3X25519(&s2, (*[32]byte)(v["bob_private"]), &ap)
	checkBytes(t, "RFC 7748 6.1 shared secret (Alice)", s1[:], v["shared"])
	checkBytes(t, "RFC 7748 6.1 shared secret (Bob)", s2[:], v["shared"])
}

// ntor3LowOrderPoints are the X25519 inputs of order 1, 2, 4 or 8 and their
// non-canonical encodings (the list libsodium rejects), each also with its
// ignored top bit set.
func ntor3LowOrderPoints(t testing.TB) [][32]byte {
	var out [][32]byte
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		var p [32]byte
		copy(p[:], mustHex(t, h))
		out = append(out, p)
		p[31] |= 0x80
		out = append(out, p)
	}
	return out
}

// TestNtorV3X25519MatchesStdlib checks the handshake's X25519 against
// crypto/ecdh, an independent implementation, on random and low-order inputs.
func TestNtorV3X25519MatchesStdlib(t *testing.T) { x25519Impls(t, testNtorV3X25519MatchesStdlib) }

func testNtorV3X25519MatchesStdlib(t *testing.T) {
	curve := ecdh.X25519()
	check := func(scalar, point *[32]byte) {
		t.Helper()
		priv, err := curve.NewPrivateKey(scalar[:])
		if err != nil {
			t.Fatal(err)
		}
		var pub [32]byte
		ntor3X25519Base(&pub, scalar)
		checkBytes(t, "public key", pub[:], priv.PublicKey().Bytes())

		var got [32]byte
		ok := ntor3X25519(&got, scalar, point)
		peer, err := curve.NewPublicKey(point[:])
		if err != nil {
			t.Fatal(err)
		}
		want, err := priv.ECDH(peer)
		if (err == nil) != ok {
			t.Fatalf("X25519(%x, %x): ok = %v, crypto/ecdh error = %v", scalar[:], point[:], ok, err)
		}
		if ok {
			checkBytes(t, "shared secret", got[:], want)
		} else if got != [32]byte{} {
			t.Fatalf("low-order result %x is not all zero", got)
		}
	}
	for i := 0; i < 100; i++ {
		var s, p [32]byte
		rand.Read(s[:])
		rand.Read(p[:]) // random u: on the curve or on its twist, top bit random
		check(&s, &p)
	}
	var s [32]byte
	rand.Read(s[:])
	for _, p := range ntor3LowOrderPoints(t) {
		check(&s, &p)
	}
}

func newNtor3Relay(t testing.TB) (RelayID, *OnionPrivateKey) {
	t.Helper()
	ik, err := GenerateIdentityKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := GenerateOnionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ik.ID(), ok
}

func TestNtorV3RoundTrip(t *testing.T) { x25519Impls(t, testNtorV3RoundTrip) }

func testNtorV3RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ver, cm, sm  []byte
		keyStreamLen int
	}{
		{"empty messages", []byte("chive-circuit-v1"), nil, nil, 1},
		{"chive verification", []byte("chive-circuit-v1"), []byte{1, 1, 2}, []byte{1, 1, 0}, 224},
		{"no verification", nil, []byte("client"), []byte("relay"), 100},
		{"max EXTEND2 message", []byte("v"), bytes.Repeat([]byte{0xaa}, 281), bytes.Repeat([]byte{0x55}, 400), 1000},
		{"long messages", []byte("v"), bytes.Repeat([]byte{7}, 5000), bytes.Repeat([]byte{8}, 5000), 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, key := newNtor3Relay(t)
			c, onionskin, err := NewNtorV3Client(rand.Reader, id, key.Public(), tc.ver, tc.cm)
			if err != nil {
				t.Fatal(err)
			}
			if len(onionskin) != NtorV3OnionskinOverhead+len(tc.cm) {
				t.Fatalf("onionskin is %d bytes, want %d", len(onionskin), NtorV3OnionskinOverhead+len(tc.cm))
			}
			if len(tc.cm) > 0 && bytes.Contains(onionskin, tc.cm) {
				t.Fatal("client message sent in the clear")
			}
			var gotCM []byte
			reply, sks, err := NtorV3Server(rand.Reader, id, []*OnionPrivateKey{key}, tc.ver, onionskin,
				func(cm []byte) ([]byte, error) { gotCM = cm; return tc.sm, nil })
			if err != nil {
				t.Fatal(err)
			}
			checkBytes(t, "client message", gotCM, tc.cm)
			if len(reply) != NtorV3ReplyOverhead+len(tc.sm) {
				t.Fatalf("reply is %d bytes, want %d", len(reply), NtorV3ReplyOverhead+len(tc.sm))
			}
			sm, cks, err := c.Finish(reply)
			if err != nil {
				t.Fatal(err)
			}
			checkBytes(t, "server message", sm, tc.sm)
			n := tc.keyStreamLen
			ck := readKeys(t, cks, n)
			sk := readKeys(t, sks, n/3, n-n/3)
			checkBytes(t, "key streams", ck, sk)
			if bytes.Equal(ck, make([]byte, n)) {
				t.Fatal("key stream is all zero")
			}
		})
	}
}

func TestNtorV3TwoHandshakesDiffer(t *testing.T) { x25519Impls(t, testNtorV3TwoHandshakesDiffer) }

func testNtorV3TwoHandshakesDiffer(t *testing.T) {
	id, key := newNtor3Relay(t)
	var streams [2][]byte
	for i := range streams {
		c, onionskin, err := NewNtorV3Client(rand.Reader, id, key.Public(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		reply, _, err := NtorV3Server(rand.Reader, id, []*OnionPrivateKey{key}, nil, onionskin, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, ks, err := c.Finish(reply)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = readKeys(t, ks, 64)
	}
	if bytes.Equal(streams[0], streams[1]) {
		t.Fatal("two handshakes gave the same keys")
	}
}

func TestNtorV3PreviousOnionKey(t *testing.T) { x25519Impls(t, testNtorV3PreviousOnionKey) }

func testNtorV3PreviousOnionKey(t *testing.T) {
	id, prev := newNtor3Relay(t)
	cur, err := GenerateOnionKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []*OnionPrivateKey{nil, cur, prev}
	for _, k := range []*OnionPrivateKey{cur, prev} {
		c, onionskin, err := NewNtorV3Client(rand.Reader, id, k.Public(), []byte("chive-circuit-v1"), []byte("hi"))
		if err != nil {
			t.Fatal(err)
		}
		reply, sks, err := NtorV3Server(rand.Reader, id, keys, []byte("chive-circuit-v1"), onionskin, nil)
		if err != nil {
			t.Fatalf("server with onion key %d: %v", k.public[0], err)
		}
		_, cks, err := c.Finish(reply)
		if err != nil {
			t.Fatal(err)
		}
		checkBytes(t, "key streams", readKeys(t, cks, 32), readKeys(t, sks, 32))
	}
}

func ntor3MustFail(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrHandshakeFailed) {
		t.Fatalf("%s: error = %v, want ErrHandshakeFailed", what, err)
	}
}

func TestNtorV3ServerRejects(t *testing.T) { x25519Impls(t, testNtorV3ServerRejects) }

func testNtorV3ServerRejects(t *testing.T) {
	id, key := newNtor3Relay(t)
	otherID, otherKey := newNtor3Relay(t)
	ver := []byte("chive-circuit-v1")
	for _, tc := range []struct {
		name     string
		reason   string // in the error text
		id       RelayID
		onion    OnionPublicKey
		ver      []byte
		serverID RelayID
		keys     []*OnionPrivateKey
	}{
		{"wrong relay ID", "another relay ID", otherID, key.Public(), ver, id, []*OnionPrivateKey{key}},
		{"server has another ID", "another relay ID", id, key.Public(), ver, otherID, []*OnionPrivateKey{key}},
		{"unknown KEYID", "unknown KEYID", id, otherKey.Public(), ver, id, []*OnionPrivateKey{key}},
		{"no keys", "unknown KEYID", id, key.Public(), ver, id, nil},
		{"only nil keys", "unknown KEYID", id, key.Public(), ver, id, []*OnionPrivateKey{nil, nil}},
		{"verification mismatch", "MAC mismatch", id, key.Public(), []byte("chive-circuit-v2"), id, []*OnionPrivateKey{key}},
		{"verification missing", "MAC mismatch", id, key.Public(), nil, id, []*OnionPrivateKey{key}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, onionskin, err := NewNtorV3Client(rand.Reader, tc.id, tc.onion, tc.ver, []byte("cm"))
			if err != nil {
				t.Fatal(err)
			}
			called := false
			reply, ks, err := NtorV3Server(rand.Reader, tc.serverID, tc.keys, ver, onionskin,
				func([]byte) ([]byte, error) { called = true; return nil, nil })
			ntor3MustFail(t, tc.name, err)
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not give the reason %q", err, tc.reason)
			}
			if reply != nil || ks != nil {
				t.Fatal("failed handshake returned a reply or keys")
			}
			if called {
				t.Fatal("respond was called for a rejected onionskin")
			}
		})
	}
}

func TestNtorV3ClientRejectsOtherServer(t *testing.T) {
	x25519Impls(t, testNtorV3ClientRejectsOtherServer)
}

func testNtorV3ClientRejectsOtherServer(t *testing.T) {
	// A reply made by another handshake (a relay that has our onionskin's
	// keys but answers another client) must not authenticate.
	v := loadNtor3Vectors(t)
	c := v.client(t)
	_, onionskin2, err := NewNtorV3Client(rand.Reader, v.id, v.B, v.ver, v.cm)
	if err != nil {
		t.Fatal(err)
	}
	reply2, _, err := v.server(onionskin2, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Finish(reply2)
	ntor3MustFail(t, "reply to another onionskin", err)

	// And a client with another verification string rejects a genuine reply.
	x := v.x
	c2, _, err := ntor3NewClient(&x, v.id, v.B, []byte("other"), v.cm)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c2.Finish(v.resp)
	ntor3MustFail(t, "verification mismatch", err)
}

// TestNtorV3FlippedBits flips each bit of the published onionskin and reply
// in turn; every one must fail with ErrHandshakeFailed.
func TestNtorV3FlippedBits(t *testing.T) { x25519Impls(t, testNtorV3FlippedBits) }

func testNtorV3FlippedBits(t *testing.T) {
	v := loadNtor3Vectors(t)
	buf := make([]byte, len(v.onionskin))
	for i := 0; i < 8*len(buf); i++ {
		copy(buf, v.onionskin)
		buf[i/8] ^= 1 << (i % 8)
		reply, ks, err := v.server(buf, func([]byte) ([]byte, error) {
			t.Fatalf("onionskin bit %d: respond called", i)
			return nil, nil
		})
		if !errors.Is(err, ErrHandshakeFailed) || reply != nil || ks != nil {
			t.Fatalf("onionskin with bit %d flipped: error = %v", i, err)
		}
	}
	buf = make([]byte, len(v.resp))
	for i := 0; i < 8*len(buf); i++ {
		copy(buf, v.resp)
		buf[i/8] ^= 1 << (i % 8)
		sm, ks, err := v.client(t).Finish(buf)
		if !errors.Is(err, ErrHandshakeFailed) || sm != nil || ks != nil {
			t.Fatalf("reply with bit %d flipped: error = %v", i, err)
		}
	}
}

func TestNtorV3Truncated(t *testing.T) { x25519Impls(t, testNtorV3Truncated) }

func testNtorV3Truncated(t *testing.T) {
	v := loadNtor3Vectors(t)
	for n := 0; n < len(v.onionskin); n++ {
		_, _, err := v.server(v.onionskin[:n:n], nil)
		ntor3MustFail(t, "onionskin of "+strconv.Itoa(n)+" bytes", err)
	}
	_, _, err := v.server(append(bytes.Clone(v.onionskin), 0), nil)
	ntor3MustFail(t, "onionskin with a byte appended", err)

	for n := 0; n < len(v.resp); n++ {
		_, _, err := v.client(t).Finish(v.resp[:n:n])
		ntor3MustFail(t, "reply of "+strconv.Itoa(n)+" bytes", err)
	}
	_, _, err = v.client(t).Finish(append(bytes.Clone(v.resp), 0))
	ntor3MustFail(t, "reply with a byte appended", err)
}

func TestNtorV3LowOrderKeys(t *testing.T) { x25519Impls(t, testNtorV3LowOrderKeys) }

func testNtorV3LowOrderKeys(t *testing.T) {
	v := loadNtor3Vectors(t)
	for _, p := range ntor3LowOrderPoints(t) {
		// A relay onion key of low order: the client refuses to start.
		c, onionskin, err := NewNtorV3Client(rand.Reader, v.id, OnionPublicKey(p), v.ver, v.cm)
		if !errors.Is(err, ErrHandshakeFailed) || !errors.Is(err, ErrLowOrderPoint) || c != nil || onionskin != nil {
			t.Fatalf("onion key %x: NewNtorV3Client error = %v", p, err)
		}

		// A client ephemeral key X of low order.
		skin := bytes.Clone(v.onionskin)
		copy(skin[ntor3IDLen+ntor3PubKeyLen:], p[:])
		_, _, err = v.server(skin, nil)
		if !errors.Is(err, ErrHandshakeFailed) || !errors.Is(err, ErrLowOrderPoint) {
			t.Fatalf("X = %x: server error = %v", p, err)
		}

		// A relay ephemeral key Y of low order.
		reply := bytes.Clone(v.resp)
		copy(reply, p[:])
		_, _, err = v.client(t).Finish(reply)
		if !errors.Is(err, ErrHandshakeFailed) || !errors.Is(err, ErrLowOrderPoint) {
			t.Fatalf("Y = %x: client error = %v", p, err)
		}
	}
}

func TestNtorV3Respond(t *testing.T) { x25519Impls(t, testNtorV3Respond) }

func testNtorV3Respond(t *testing.T) {
	v := loadNtor3Vectors(t)
	refused := errors.New("delay class not offered")
	reply, ks, err := v.server(v.onionskin, func([]byte) ([]byte, error) { return nil, refused })
	if !errors.Is(err, refused) || errors.Is(err, ErrHandshakeFailed) || reply != nil || ks != nil {
		t.Fatalf("respond error: got %v, want it wrapped and not ErrHandshakeFailed", err)
	}

	// A nil respond sends an empty message.
	reply, _, err = v.server(v.onionskin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) != NtorV3ReplyOverhead {
		t.Fatalf("reply with nil respond is %d bytes, want %d", len(reply), NtorV3ReplyOverhead)
	}
	sm, _, err := v.client(t).Finish(reply)
	if err != nil || len(sm) != 0 {
		t.Fatalf("Finish = %x, %v; want empty message", sm, err)
	}

	// respond scribbling over the caller's onionskin changes nothing that
	// was authenticated.
	skin := bytes.Clone(v.onionskin)
	reply, _, err = v.server(skin, func([]byte) ([]byte, error) { clear(skin); return v.sm, nil })
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, "reply after respond cleared the onionskin", reply, v.resp)
}

type ntor3BadReader struct{}

var errNtor3BadReader = errors.New("entropy source failed")

func (ntor3BadReader) Read([]byte) (int, error) { return 0, errNtor3BadReader }

func TestNtorV3RandFailure(t *testing.T) { x25519Impls(t, testNtorV3RandFailure) }

func testNtorV3RandFailure(t *testing.T) {
	v := loadNtor3Vectors(t)
	if _, _, err := NewNtorV3Client(ntor3BadReader{}, v.id, v.B, v.ver, v.cm); !errors.Is(err, errNtor3BadReader) {
		t.Fatalf("client: error = %v, want the reader's", err)
	}
	if _, _, err := NewNtorV3Client(bytes.NewReader(v.x[:31]), v.id, v.B, v.ver, v.cm); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("client with 31 random bytes: error = %v", err)
	}
	_, _, err := NtorV3Server(ntor3BadReader{}, v.id, []*OnionPrivateKey{v.b}, v.ver, v.onionskin, nil)
	if !errors.Is(err, errNtor3BadReader) {
		t.Fatalf("server: error = %v, want the reader's", err)
	}
}

func TestNtorV3Wipe(t *testing.T) { x25519Impls(t, testNtorV3Wipe) }

func testNtorV3Wipe(t *testing.T) {
	v := loadNtor3Vectors(t)
	c := v.client(t)
	if c.x != v.x || c.bx == [32]byte{} {
		t.Fatal("client state not set up")
	}
	_, ks, err := c.Finish(v.resp)
	if err != nil {
		t.Fatal(err)
	}
	if c.x != [32]byte{} || c.bx != [32]byte{} || c.msgMAC != [32]byte{} || !bytes.Equal(c.ver, make([]byte, len(v.ver))) {
		t.Fatal("Finish left secrets in the client state")
	}
	if _, _, err := c.Finish(v.resp); !errors.Is(err, errNtor3ClientUsed) {
		t.Fatalf("second Finish: error = %v", err)
	}

	// Failure wipes too.
	c = v.client(t)
	if _, _, err := c.Finish(nil); err == nil {
		t.Fatal("Finish(nil) succeeded")
	}
	if c.x != [32]byte{} || c.bx != [32]byte{} {
		t.Fatal("failed Finish left secrets in the client state")
	}

	c = v.client(t)
	c.Wipe()
	c.Wipe()
	if _, _, err := c.Finish(v.resp); !errors.Is(err, errNtor3ClientUsed) {
		t.Fatalf("Finish after Wipe: error = %v", err)
	}
	(*NtorV3Client)(nil).Wipe()

	ks.Wipe()
	ks.Wipe()
	(*KeyStream)(nil).Wipe()
	for name, k := range map[string]*KeyStream{"wiped": ks, "zero": new(KeyStream)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("Read of a %s KeyStream did not panic", name)
				}
			}()
			k.Read(make([]byte, 1))
		}()
	}
	if _, _, err := (*NtorV3Client)(nil).Finish(v.resp); !errors.Is(err, errNtor3ClientUsed) {
		t.Fatalf("Finish on nil: error = %v", err)
	}
}

// FuzzNtorV3Server feeds arbitrary onionskins to the relay side, holding the
// published test-vector keys. Only the published onionskin may succeed.
func FuzzNtorV3Server(f *testing.F) {
	v := loadNtor3Vectors(f)
	f.Add(v.onionskin)
	f.Fuzz(func(t *testing.T, onionskin []byte) {
		called := 0
		reply, ks, err := v.server(onionskin, func(cm []byte) ([]byte, error) {
			called++
			if len(cm) != len(onionskin)-NtorV3OnionskinOverhead {
				t.Fatalf("client message is %d bytes from a %d-byte onionskin", len(cm), len(onionskin))
			}
			return v.sm, nil
		})
		if err != nil {
			if !errors.Is(err, ErrHandshakeFailed) || reply != nil || ks != nil || called != 0 {
				t.Fatalf("failure: err = %v, reply = %x, keys = %v, respond calls = %d", err, reply, ks != nil, called)
			}
			return
		}
		if called != 1 || !bytes.Equal(onionskin, v.onionskin) || !bytes.Equal(reply, v.resp) {
			t.Fatalf("unexpected success on %x: reply %x", onionskin, reply)
		}
		ks.Wipe()
	})
}

// FuzzNtorV3Client feeds arbitrary replies to a client in the published
// test-vector state. Only the published reply may succeed.
func FuzzNtorV3Client(f *testing.F) {
	v := loadNtor3Vectors(f)
	f.Add(v.resp)
	f.Fuzz(func(t *testing.T, reply []byte) {
		sm, ks, err := v.client(t).Finish(reply)
		if err != nil {
			if !errors.Is(err, ErrHandshakeFailed) || sm != nil || ks != nil {
				t.Fatalf("failure: err = %v, message = %x, keys = %v", err, sm, ks != nil)
			}
			return
		}
		if !bytes.Equal(reply, v.resp) || !bytes.Equal(sm, v.sm) {
			t.Fatalf("unexpected success on %x: message %x", reply, sm)
		}
		ks.Wipe()
	})
}

func BenchmarkNtorV3Client(b *testing.B) { x25519BenchImpls(b, benchmarkNtorV3Client) }

func benchmarkNtorV3Client(b *testing.B) {
	id, key := newNtor3Relay(b)
	ver, cm, sm := []byte("chive-circuit-v1"), []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{1, 2, 3, 4}
	var x [32]byte
	rand.Read(x[:])
	_, onionskin, err := ntor3NewClient(&x, id, key.Public(), ver, cm)
	if err != nil {
		b.Fatal(err)
	}
	reply, _, err := NtorV3Server(rand.Reader, id, []*OnionPrivateKey{key}, ver, onionskin,
		func([]byte) ([]byte, error) { return sm, nil })
	if err != nil {
		b.Fatal(err)
	}
	var r bytes.Reader
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(x[:])
		c, _, err := NewNtorV3Client(&r, id, key.Public(), ver, cm)
		if err != nil {
			b.Fatal(err)
		}
		_, ks, err := c.Finish(reply)
		if err != nil {
			b.Fatal(err)
		}
		ks.Wipe()
	}
}

func BenchmarkNtorV3Server(b *testing.B) { x25519BenchImpls(b, benchmarkNtorV3Server) }

func benchmarkNtorV3Server(b *testing.B) {
	id, key := newNtor3Relay(b)
	prev, err := GenerateOnionKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	keys := []*OnionPrivateKey{key, prev}
	ver, cm, sm := []byte("chive-circuit-v1"), []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{1, 2, 3, 4}
	_, onionskin, err := NewNtorV3Client(rand.Reader, id, key.Public(), ver, cm)
	if err != nil {
		b.Fatal(err)
	}
	respond := func([]byte) ([]byte, error) { return sm, nil }
	b.Run("fresh-ephemeral", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, ks, err := NtorV3Server(rand.Reader, id, keys, ver, onionskin, respond)
			if err != nil {
				b.Fatal(err)
			}
			ks.Wipe()
		}
	})
	// The time a handshake waits with its ephemeral pair computed ahead
	// (the relay computes the next one after answering: same CPU, off the
	// critical path). The refill is outside the timer.
	b.Run("ephemeral-ahead", func(b *testing.B) {
		e := NewNtorV3Ephemerals(rand.Reader, 1)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			e.Refill(1)
			b.StartTimer()
			_, ks, err := NtorV3ServerWith(e, rand.Reader, id, keys, ver, onionskin, respond)
			if err != nil {
				b.Fatal(err)
			}
			ks.Wipe()
		}
	})
}

func BenchmarkNtorV3X25519(b *testing.B) { x25519BenchImpls(b, benchmarkNtorV3X25519) }

func benchmarkNtorV3X25519(b *testing.B) {
	var s, p, out [32]byte
	rand.Read(s[:])
	ntor3X25519Base(&p, &s)
	b.ReportAllocs()
	for b.Loop() {
		ntor3X25519(&out, &s, &p)
	}
}

func BenchmarkNtorV3X25519Base(b *testing.B) { x25519BenchImpls(b, benchmarkNtorV3X25519Base) }

func benchmarkNtorV3X25519Base(b *testing.B) {
	var s, out [32]byte
	rand.Read(s[:])
	b.ReportAllocs()
	for b.Loop() {
		ntor3X25519Base(&out, &s)
	}
}

func BenchmarkNtorV3KeyStream(b *testing.B) {
	var seed, encKey [32]byte
	ks := ntor3FinalKeys(&encKey, &seed)
	p := make([]byte, 224)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		ks.Read(p)
	}
}

// TestNtorV3Ephemerals: handshakes with pairs computed ahead complete with
// the client and agree on keys; each pair serves one handshake; the store
// holds at most its maximum; Wipe empties it; an empty store falls back to
// making a pair.
func TestNtorV3Ephemerals(t *testing.T) { x25519Impls(t, testNtorV3Ephemerals) }

func testNtorV3Ephemerals(t *testing.T) {
	id, key := newNtor3Relay(t)
	e := NewNtorV3Ephemerals(rand.Reader, 3)
	if err := e.Refill(10); err != nil {
		t.Fatal(err)
	}
	if e.Len() != 3 {
		t.Fatalf("store holds %d pairs, want its maximum 3", e.Len())
	}
	seen := map[string]bool{}
	for i := range 5 { // 3 from the store, then 2 made on the spot
		c, onionskin, err := NewNtorV3Client(rand.Reader, id, key.Public(), []byte("v"), []byte("hi"))
		if err != nil {
			t.Fatal(err)
		}
		reply, sks, err := NtorV3ServerWith(e, rand.Reader, id, []*OnionPrivateKey{key}, []byte("v"), onionskin,
			func([]byte) ([]byte, error) { return []byte("ok"), nil })
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		y := string(reply[:ntor3PubKeyLen])
		if seen[y] {
			t.Fatalf("handshake %d reused an ephemeral key", i)
		}
		seen[y] = true
		sm, cks, err := c.Finish(reply)
		if err != nil {
			t.Fatalf("handshake %d: client: %v", i, err)
		}
		checkBytes(t, "server message", sm, []byte("ok"))
		checkBytes(t, "key streams", readKeys(t, cks, 64), readKeys(t, sks, 64))
		if want := max(0, 2-i); e.Len() != want {
			t.Fatalf("after handshake %d the store holds %d, want %d", i, e.Len(), want)
		}
	}
	e.Refill(2)
	held := e.pairs[0]
	e.Wipe()
	if e.Len() != 0 || held.y != ([32]byte{}) || held.pubY != ([32]byte{}) {
		t.Fatal("Wipe left pairs or key material behind")
	}
	if e.Refill(1); e.Len() != 0 {
		t.Fatal("a wiped store took a new pair")
	}
}

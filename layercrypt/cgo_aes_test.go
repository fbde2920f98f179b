package layercrypt

import (
	"bytes"
	"crypto/aes"
	"math/rand/v2"
	"testing"
)

// cgoAESMode is one AES implementation: VAES, AES-NI or crypto/aes.
type cgoAESMode struct {
	name      string
	asm, vaes bool
}

// cgoAESModes lists the AES implementations this machine can run.
func cgoAESModes() []cgoAESMode {
	var ms []cgoAESMode
	if cgoAESHaveVAES {
		ms = append(ms, cgoAESMode{"vaes", true, true})
	}
	if cgoAESHaveAsm {
		ms = append(ms, cgoAESMode{"aesni", true, false})
	}
	return append(ms, cgoAESMode{"crypto-aes", false, false})
}

// saveAESMode restores the AES selection when t ends.
func saveAESMode(t testing.TB) {
	a, v := cgoAESUseAsm, cgoAESUseVAES
	t.Cleanup(func() { cgoAESUseAsm, cgoAESUseVAES = a, v })
}

// cgoImpls runs f under every combination of the POLYVAL and AES
// implementations this machine has.
func cgoImpls(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	savedP := polyvalUseAsm
	t.Cleanup(func() { polyvalUseAsm = savedP })
	saveAESMode(t)
	for _, pa := range []bool{true, false} {
		if pa && !polyvalHaveAsm {
			continue
		}
		for _, m := range cgoAESModes() {
			polyvalUseAsm = pa
			cgoAESUseAsm, cgoAESUseVAES = m.asm, m.vaes
			t.Run("polyval-"+map[bool]string{true: "asm", false: "generic"}[pa]+"/aes-"+m.name, f)
		}
	}
}

// aesImpls runs f with each AES implementation this machine has.
func aesImpls(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saveAESMode(t)
	for _, m := range cgoAESModes() {
		cgoAESUseAsm, cgoAESUseVAES = m.asm, m.vaes
		t.Run(m.name, f)
	}
}

// FIPS-197 (AES), Appendix B (cipher example, with the key of the
// Appendix A.1 key expansion example) and Appendix C.1 (AES-128 example
// vector).
var cgoAESFIPS197 = []struct {
	name, key, plain, cipher string
}{
	{"FIPS-197 Appendix B", "2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734", "3925841d02dc09fbdc118597196a0b32"},
	{"FIPS-197 Appendix C.1", "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff", "69c4e0d86a7b0430d8cdb78070b4c55a"},
}

func TestCGOAESFIPS197(t *testing.T) {
	aesImpls(t, func(t *testing.T) {
		for _, v := range cgoAESFIPS197 {
			var key [16]byte
			copy(key[:], polyvalUnhex(t, v.key))
			var a cgoAES
			a.init(&key, true)
			var b [16]byte
			copy(b[:], polyvalUnhex(t, v.plain))
			a.encryptBlock(&b)
			if want := polyvalUnhex(t, v.cipher); !bytes.Equal(b[:], want) {
				t.Errorf("%s: encrypt got %x, want %x", v.name, b, want)
			}
			a.decryptBlock(&b)
			if want := polyvalUnhex(t, v.plain); !bytes.Equal(b[:], want) {
				t.Errorf("%s: decrypt got %x, want %x", v.name, b, want)
			}
		}
	})
}

// TestCGOAESKeyExpansionFIPS197 checks round keys 1 and 10 of FIPS-197
// Appendix A.1 (words w[4..7] and w[40..43]).
func TestCGOAESKeyExpansionFIPS197(t *testing.T) {
	if !cgoAESHaveAsm {
		t.Skip("no AES-NI assembly on this build/CPU")
	}
	saveAESMode(t)
	cgoAESUseAsm = true
	var key [16]byte
	copy(key[:], polyvalUnhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	var a cgoAES
	a.init(&key, false)
	if !bytes.Equal(a.enc[0][:], key[:]) {
		t.Errorf("round key 0 = %x", a.enc[0])
	}
	if want := polyvalUnhex(t, "a0fafe1788542cb123a339392a6c7605"); !bytes.Equal(a.enc[1][:], want) {
		t.Errorf("round key 1 = %x, want %x", a.enc[1], want)
	}
	if want := polyvalUnhex(t, "d014f9a8c9ee2589e13f0cc8b6630ca6"); !bytes.Equal(a.enc[10][:], want) {
		t.Errorf("round key 10 = %x, want %x", a.enc[10], want)
	}
	if a.dec != ([11][16]byte{}) {
		t.Error("decryption keys set up without being asked for")
	}
}

// TestCGOAESMatchesCryptoAES checks the AES-NI and VAES code against
// crypto/aes on random keys: block encryption, decryption and CTR key
// stream of random lengths (so every partial-pass shape).
func TestCGOAESMatchesCryptoAES(t *testing.T) {
	if !cgoAESHaveAsm {
		t.Skip("no AES-NI assembly on this build/CPU")
	}
	saveAESMode(t)
	for _, m := range cgoAESModes() {
		if !m.asm {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			cgoAESUseAsm, cgoAESUseVAES = m.asm, m.vaes
			cgoAESCheckAgainstCryptoAES(t)
		})
	}
}

func cgoAESCheckAgainstCryptoAES(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for i := 0; i < 1000; i++ {
		var key, blk, iv [16]byte
		fillRand(rng, key[:])
		fillRand(rng, blk[:])
		fillRand(rng, iv[:])
		ref, err := aes.NewCipher(key[:])
		if err != nil {
			t.Fatal(err)
		}
		var a cgoAES
		a.init(&key, true)

		var want [16]byte
		ref.Encrypt(want[:], blk[:])
		got := blk
		a.encryptBlock(&got)
		if got != want {
			t.Fatalf("key %x: encrypt %x, want %x", key, got, want)
		}
		ref.Decrypt(want[:], blk[:])
		got = blk
		a.decryptBlock(&got)
		if got != want {
			t.Fatalf("key %x: decrypt %x, want %x", key, got, want)
		}

		n := rng.IntN(3*cgoCTRBatchLen + 1)
		batches := (n + cgoCTRBatchLen - 1) / cgoCTRBatchLen
		iv[15] = byte(rng.IntN(256 - batches*cgoCTRBatch + 1))
		// Guard bytes after the data catch writes past its end.
		buf := make([]byte, n+2*cgoCTRBatchLen)
		fillRand(rng, buf)
		orig := bytes.Clone(buf)
		data := buf[:n:n]
		a.xorKeyStream(&iv, data)
		if !bytes.Equal(buf[n:], orig[n:]) {
			t.Fatalf("key %x iv %x len %d: key stream written past the data", key, iv, n)
		}
		for j := 0; j < n; j += 16 {
			ctr := iv
			ctr[15] += byte(j / 16)
			ref.Encrypt(want[:], ctr[:])
			for k := j; k < min(j+16, n); k++ {
				if data[k] != orig[k]^want[k-j] {
					t.Fatalf("key %x iv %x len %d: CTR byte %d wrong", key, iv, n, k)
				}
			}
		}
	}
}

func TestCGOAESRejectsBadCTR(t *testing.T) {
	aesImpls(t, func(t *testing.T) {
		var a cgoAES
		a.init(&[16]byte{}, false)
		for name, f := range map[string]func(){
			"counter wraps": func() { a.xorKeyStream(&[16]byte{15: 0xfc}, make([]byte, 1)) },
			"counter wraps on a later batch": func() {
				a.xorKeyStream(&[16]byte{15: 256 - 2*cgoCTRBatch + 1}, make([]byte, cgoCTRBatchLen+1))
			},
			"no decrypt key": func() {
				var b [16]byte
				a.decryptBlock(&b)
			},
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s: no panic", name)
					}
				}()
				f()
			}()
		}
		// The largest requests CGO makes are allowed.
		a.xorKeyStream(&[16]byte{15: 0xc0}, make([]byte, CGOMessageLen))
		a.xorKeyStream(&[16]byte{15: 0xc0 + cgoPRFT1Offset}, make([]byte, cgoUpdateLen))
	})
}

func BenchmarkCGOAESExpand(b *testing.B) {
	var key [16]byte
	var a cgoAES
	b.ReportAllocs()
	m := newCGOCPUMeter(b)
	for range b.N {
		a.init(&key, true)
	}
	m.report()
}

func BenchmarkCGOAESCTR(b *testing.B) {
	var key, iv [16]byte
	var a cgoAES
	a.init(&key, false)
	var data [CGOMessageLen]byte
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	m := newCGOCPUMeter(b)
	for range b.N {
		a.xorKeyStream(&iv, data[:])
	}
	m.report()
}

// TestCGOAESInitPairMatchesCryptoAES checks the two-key expansion (and the
// inverse keys of the first) against crypto/aes.
func TestCGOAESInitPairMatchesCryptoAES(t *testing.T) {
	aesImpls(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(15, 16))
		for i := 0; i < 300; i++ {
			var ka, kb, blk [16]byte
			fillRand(rng, ka[:])
			fillRand(rng, kb[:])
			fillRand(rng, blk[:])
			var a, b cgoAES
			cgoAESInitPair(&a, &b, &ka, &kb, i%2 == 0)
			for _, c := range []struct {
				aes *cgoAES
				key [16]byte
			}{{&a, ka}, {&b, kb}} {
				ref, _ := aes.NewCipher(c.key[:])
				var want [16]byte
				ref.Encrypt(want[:], blk[:])
				got := blk
				c.aes.encryptBlock(&got)
				if got != want {
					t.Fatalf("case %d key %x: encrypt %x, want %x", i, c.key, got, want)
				}
			}
			if i%2 == 0 {
				ref, _ := aes.NewCipher(ka[:])
				var want [16]byte
				ref.Decrypt(want[:], blk[:])
				got := blk
				a.decryptBlock(&got)
				if got != want {
					t.Fatalf("case %d key %x: decrypt %x, want %x", i, ka, got, want)
				}
			} else if a.hasDec || b.hasDec {
				t.Fatal("decryption keys set up without being asked for")
			}
		}
	})
}

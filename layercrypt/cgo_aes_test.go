package layercrypt

import (
	"bytes"
	"crypto/aes"
	"math/rand/v2"
	"testing"
)

// cgoImpls runs f under every combination of the POLYVAL and AES
// implementations this machine has: assembly for both, portable POLYVAL
// with crypto/aes, and the two mixed ones.
func cgoImpls(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	savedP, savedA := polyvalUseAsm, cgoAESUseAsm
	t.Cleanup(func() { polyvalUseAsm, cgoAESUseAsm = savedP, savedA })
	for _, pa := range []bool{true, false} {
		for _, aa := range []bool{true, false} {
			if (pa && !polyvalHaveAsm) || (aa && !cgoAESHaveAsm) {
				continue
			}
			name := map[bool]string{true: "asm", false: "generic"}
			polyvalUseAsm, cgoAESUseAsm = pa, aa
			t.Run("polyval-"+name[pa]+"/aes-"+name[aa], f)
		}
	}
	polyvalUseAsm, cgoAESUseAsm = savedP, savedA
}

// aesImpls runs f with AES-NI (if present) and with crypto/aes.
func aesImpls(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := cgoAESUseAsm
	t.Cleanup(func() { cgoAESUseAsm = saved })
	if cgoAESHaveAsm {
		cgoAESUseAsm = true
		t.Run("aesni", f)
	} else {
		t.Log("no AES-NI assembly on this build/CPU; testing the crypto/aes fallback only")
	}
	cgoAESUseAsm = false
	t.Run("crypto-aes", f)
	cgoAESUseAsm = saved
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
	saved := cgoAESUseAsm
	t.Cleanup(func() { cgoAESUseAsm = saved })
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

// TestCGOAESMatchesCryptoAES checks the AES-NI code against crypto/aes on
// random keys: block encryption, decryption and CTR key stream.
func TestCGOAESMatchesCryptoAES(t *testing.T) {
	if !cgoAESHaveAsm {
		t.Skip("no AES-NI assembly on this build/CPU")
	}
	saved := cgoAESUseAsm
	t.Cleanup(func() { cgoAESUseAsm = saved })
	cgoAESUseAsm = true
	rng := rand.New(rand.NewPCG(13, 14))
	for i := 0; i < 500; i++ {
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

		nbatch := 1 + rng.IntN(4)
		iv[15] = byte(rng.IntN(256 - nbatch*cgoCTRBatch + 1))
		ks := make([]byte, nbatch*cgoCTRBatchLen)
		a.ctr(&iv, ks)
		for j := 0; j < len(ks)/16; j++ {
			ctr := iv
			ctr[15] += byte(j)
			ref.Encrypt(want[:], ctr[:])
			if !bytes.Equal(ks[j*16:(j+1)*16], want[:]) {
				t.Fatalf("key %x iv %x: CTR block %d = %x, want %x", key, iv, j, ks[j*16:(j+1)*16], want)
			}
		}
	}
}

func TestCGOAESRejectsBadCTR(t *testing.T) {
	aesImpls(t, func(t *testing.T) {
		var a cgoAES
		a.init(&[16]byte{}, false)
		for name, f := range map[string]func(){
			"partial batch": func() { a.ctr(&[16]byte{}, make([]byte, 16)) },
			"counter wraps": func() { a.ctr(&[16]byte{15: 0xfc}, make([]byte, cgoCTRBatchLen)) },
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
	})
}

func BenchmarkCGOAESExpand(b *testing.B) {
	var key [16]byte
	var a cgoAES
	b.ReportAllocs()
	for range b.N {
		a.init(&key, true)
	}
}

func BenchmarkCGOAESCTR(b *testing.B) {
	var key, iv [16]byte
	var a cgoAES
	a.init(&key, false)
	ks := make([]byte, cgoPRFT0Batches*cgoCTRBatchLen)
	b.ReportAllocs()
	b.SetBytes(int64(len(ks)))
	for range b.N {
		a.ctr(&iv, ks)
	}
}

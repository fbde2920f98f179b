package layercrypt

// AES-128 as CGO uses it.
//
// On amd64 with AES-NI, cgo_aes_amd64.s expands keys with AESKEYGENASSIST
// into round keys held here, in fixed arrays that Wipe zeroes, and runs
// the CTR key stream eight blocks at a time. crypto/aes offers neither: its
// only allocation-free entry point is one block per call, which costs
// about 3/4 of a forwarded cell, its CTR mode allocates a copy of the key
// schedule on every new IV, and its key schedules cannot be zeroed. Where
// AES-NI is missing (or with the purego tag) this falls back to crypto/aes,
// which is also what the tests check the assembly against.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
)

const (
	cgoAESRounds = 10 // AES-128
	// cgoCTRBatch is the most key-stream blocks an implementation makes
	// per pass (16 with VAES, 8 with AES-NI); a request may make up to
	// that many blocks more than it uses, and the IV must have room.
	cgoCTRBatch    = 16
	cgoCTRBatchLen = cgoCTRBatch * cgoBlockLen
)

// cgoAES is one AES-128 key, ready to encrypt (and, if keyed with
// withDecrypt, to decrypt) single blocks and to make CTR key stream.
type cgoAES struct {
	enc    [cgoAESRounds + 1][cgoBlockLen]byte // round keys (AES-NI)
	dec    [cgoAESRounds + 1][cgoBlockLen]byte // inverse-cipher round keys (AES-NI)
	blk    cipher.Block                        // crypto/aes fallback
	asm    bool                                // keyed for the AES-NI code
	hasDec bool
}

func (a *cgoAES) initGeneric(key *[cgoAESKeyLen]byte, withDecrypt bool) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		// Unreachable: the key is always 16 bytes.
		panic("layercrypt: " + err.Error())
	}
	clear(a.enc[:])
	clear(a.dec[:])
	a.blk = b
	a.asm = false
	a.hasDec = withDecrypt
}

// cgoCTRCheck panics unless a key stream of n bytes from iv can be made by
// counting in the last IV byte alone, in whole batches of cgoCTRBatch
// blocks, without that byte wrapping. CGO's PRF never asks for more than
// its IV leaves room for (see the checks next to cgoPRFT0Batches).
func cgoCTRCheck(iv *[cgoBlockLen]byte, n int) {
	batches := (n + cgoCTRBatchLen - 1) / cgoCTRBatchLen
	if n < 0 || int(iv[cgoBlockLen-1])+batches*cgoCTRBatch > 256 {
		panic("layercrypt: CTR key stream request would wrap the counter byte")
	}
}

// xorKeyStreamGeneric is xorKeyStream with crypto/aes, one block at a
// time.
func (a *cgoAES) xorKeyStreamGeneric(iv *[cgoBlockLen]byte, data []byte) {
	var ks [cgoBlockLen]byte
	for i := 0; len(data) > 0; i++ {
		ks = *iv
		ks[cgoBlockLen-1] += byte(i)
		a.blk.Encrypt(ks[:], ks[:])
		n := subtle.XORBytes(data, data, ks[:])
		data = data[n:]
	}
	clear(ks[:])
}

// wipe zeroes the round keys and drops the crypto/aes instance (whose key
// schedule crypto/aes gives no way to zero).
func (a *cgoAES) wipe() {
	clear(a.enc[:])
	clear(a.dec[:])
	a.blk = nil
	a.asm = false
	a.hasDec = false
}

func (a *cgoAES) checkDecrypt() {
	if !a.hasDec {
		panic("layercrypt: AES key not set up for decryption")
	}
}

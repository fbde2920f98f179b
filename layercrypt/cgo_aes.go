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
)

const (
	cgoAESRounds = 10 // AES-128
	// cgoCTRBatch is how many key-stream blocks the assembly makes per
	// pass; key-stream buffers are a whole number of batches long.
	cgoCTRBatch    = 8
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

// ctrGeneric is ctr with crypto/aes, one block at a time.
func (a *cgoAES) ctrGeneric(iv *[cgoBlockLen]byte, ks []byte) {
	for i := 0; i < len(ks)/cgoBlockLen; i++ {
		blk := ks[i*cgoBlockLen : (i+1)*cgoBlockLen]
		copy(blk, iv[:])
		blk[cgoBlockLen-1] += byte(i)
		a.blk.Encrypt(blk, blk)
	}
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

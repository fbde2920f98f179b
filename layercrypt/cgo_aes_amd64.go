//go:build amd64 && !purego

package layercrypt

import "golang.org/x/sys/cpu"

// cgoAESHaveAsm reports whether this CPU has AES-NI.
var cgoAESHaveAsm = cpu.X86.HasAES

// cgoAESUseAsm selects AES-NI for keys set up from now on. Tests clear it to
// force the crypto/aes fallback.
var cgoAESUseAsm = cgoAESHaveAsm

// cgoAESExpandAsm sets enc to the AES-128 round keys of key.
//
//go:noescape
func cgoAESExpandAsm(key *[cgoAESKeyLen]byte, enc *[cgoAESRounds + 1][cgoBlockLen]byte)

// cgoAESInvertAsm sets dec to the round keys of the equivalent inverse
// cipher (for AESDEC) of the encryption round keys enc.
//
//go:noescape
func cgoAESInvertAsm(enc, dec *[cgoAESRounds + 1][cgoBlockLen]byte)

//go:noescape
func cgoAESEncryptBlockAsm(enc *[cgoAESRounds + 1][cgoBlockLen]byte, dst, src *[cgoBlockLen]byte)

//go:noescape
func cgoAESDecryptBlockAsm(dec *[cgoAESRounds + 1][cgoBlockLen]byte, dst, src *[cgoBlockLen]byte)

// cgoAESCTRAsm writes 8*nbatch key-stream blocks to out: AES(iv + i) for
// i = 0, 1, ..., where "+ i" adds to the last byte only. The caller makes
// sure that byte cannot wrap.
//
//go:noescape
func cgoAESCTRAsm(enc *[cgoAESRounds + 1][cgoBlockLen]byte, iv *[cgoBlockLen]byte, out *byte, nbatch int)

// init keys a; withDecrypt also prepares decryption.
func (a *cgoAES) init(key *[cgoAESKeyLen]byte, withDecrypt bool) {
	if !cgoAESUseAsm {
		a.initGeneric(key, withDecrypt)
		return
	}
	cgoAESExpandAsm(key, &a.enc)
	if withDecrypt {
		cgoAESInvertAsm(&a.enc, &a.dec)
	} else {
		clear(a.dec[:])
	}
	a.blk = nil
	a.asm = true
	a.hasDec = withDecrypt
}

func (a *cgoAES) encryptBlock(b *[cgoBlockLen]byte) {
	if a.asm {
		cgoAESEncryptBlockAsm(&a.enc, b, b)
		return
	}
	a.blk.Encrypt(b[:], b[:])
}

func (a *cgoAES) decryptBlock(b *[cgoBlockLen]byte) {
	a.checkDecrypt()
	if a.asm {
		cgoAESDecryptBlockAsm(&a.dec, b, b)
		return
	}
	a.blk.Decrypt(b[:], b[:])
}

// ctr fills ks (a whole number of cgoCTRBatchLen) with CTR key stream
// from iv, counting in the last byte of the IV, which must have room for
// len(ks)/16 steps.
func (a *cgoAES) ctr(iv *[cgoBlockLen]byte, ks []byte) {
	if len(ks)%cgoCTRBatchLen != 0 || int(iv[cgoBlockLen-1])+len(ks)/cgoBlockLen > 256 {
		panic("layercrypt: bad CTR request")
	}
	if a.asm {
		cgoAESCTRAsm(&a.enc, iv, &ks[0], len(ks)/cgoCTRBatchLen)
		return
	}
	a.ctrGeneric(iv, ks)
}

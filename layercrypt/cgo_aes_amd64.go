//go:build amd64 && !purego

package layercrypt

import "golang.org/x/sys/cpu"

// cgoAESHaveAsm reports whether this CPU has AES-NI.
var cgoAESHaveAsm = cpu.X86.HasAES

// cgoAESUseAsm selects AES-NI for keys set up from now on. Tests clear it to
// force the crypto/aes fallback.
var cgoAESUseAsm = cgoAESHaveAsm

// cgoAESHaveVAES reports whether this CPU can also make key stream with
// VAES on 512-bit registers (with AVX512BW byte masks and BMI2 for the
// last, partial pass).
var cgoAESHaveVAES = cgoAESHaveAsm && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW &&
	cpu.X86.HasAVX512VAES && cpu.X86.HasBMI2

// cgoAESUseVAES selects the VAES key stream where AES-NI is in use. Tests
// clear it to exercise the 128-bit code.
var cgoAESUseVAES = cgoAESHaveVAES

// cgoAESExpandAsm sets enc to the AES-128 round keys of key.
//
//go:noescape
func cgoAESExpandAsm(key *[cgoAESKeyLen]byte, enc *[cgoAESRounds + 1][cgoBlockLen]byte)

// cgoAESExpand2Asm sets ea and eb to the round keys of ka and kb.
//
//go:noescape
func cgoAESExpand2Asm(ka, kb *[cgoAESKeyLen]byte, ea, eb *[cgoAESRounds + 1][cgoBlockLen]byte)

// cgoAESInvertAsm sets dec to the round keys of the equivalent inverse
// cipher (for AESDEC) of the encryption round keys enc.
//
//go:noescape
func cgoAESInvertAsm(enc, dec *[cgoAESRounds + 1][cgoBlockLen]byte)

//go:noescape
func cgoAESEncryptBlockAsm(enc *[cgoAESRounds + 1][cgoBlockLen]byte, dst, src *[cgoBlockLen]byte)

//go:noescape
func cgoAESDecryptBlockAsm(dec *[cgoAESRounds + 1][cgoBlockLen]byte, dst, src *[cgoBlockLen]byte)

// cgoAESCTRXorAsm XORs n bytes of CTR key stream into data: AES(iv + i)
// for i = 0, 1, ..., where "+ i" adds to the last byte only. It makes the
// stream in batches of cgoCTRBatch blocks; the caller makes sure the last
// IV byte cannot wrap.
//
//go:noescape
func cgoAESCTRXorAsm(enc *[cgoAESRounds + 1][cgoBlockLen]byte, iv *[cgoBlockLen]byte, data *byte, n int)

// cgoAESCTRXorVAESAsm is cgoAESCTRXorAsm with VAES, 16 blocks per pass.
//
//go:noescape
func cgoAESCTRXorVAESAsm(enc *[cgoAESRounds + 1][cgoBlockLen]byte, iv *[cgoBlockLen]byte, data *byte, n int)

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

// cgoAESInitPair keys a with ka (withDecrypt preparing decryption) and b
// with kb (encryption only), expanding both keys in one pass.
func cgoAESInitPair(a, b *cgoAES, ka, kb *[cgoAESKeyLen]byte, withDecrypt bool) {
	if !cgoAESUseAsm {
		a.initGeneric(ka, withDecrypt)
		b.initGeneric(kb, false)
		return
	}
	cgoAESExpand2Asm(ka, kb, &a.enc, &b.enc)
	if withDecrypt {
		cgoAESInvertAsm(&a.enc, &a.dec)
	} else {
		clear(a.dec[:])
	}
	clear(b.dec[:])
	a.blk, b.blk = nil, nil
	a.asm, b.asm = true, true
	a.hasDec, b.hasDec = withDecrypt, false
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

// xorKeyStream XORs len(data) bytes of CTR key stream from iv into data.
// The stream counts in the last byte of the IV only (see cgoCTRCheck).
func (a *cgoAES) xorKeyStream(iv *[cgoBlockLen]byte, data []byte) {
	cgoCTRCheck(iv, len(data))
	if len(data) == 0 {
		return
	}
	if a.asm {
		if cgoAESUseVAES {
			cgoAESCTRXorVAESAsm(&a.enc, iv, &data[0], len(data))
			return
		}
		cgoAESCTRXorAsm(&a.enc, iv, &data[0], len(data))
		return
	}
	a.xorKeyStreamGeneric(iv, data)
}

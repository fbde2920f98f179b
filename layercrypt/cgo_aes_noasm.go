//go:build !amd64 || purego

package layercrypt

// Without the amd64 assembly, AES comes from crypto/aes. The variables
// mirror cgo_aes_amd64.go so that the tests build everywhere.
var (
	cgoAESHaveAsm  = false
	cgoAESUseAsm   = false
	cgoAESHaveVAES = false
	cgoAESUseVAES  = false
)

// init keys a; withDecrypt also prepares decryption.
func (a *cgoAES) init(key *[cgoAESKeyLen]byte, withDecrypt bool) {
	a.initGeneric(key, withDecrypt)
}

// cgoAESInitPair keys a with ka (withDecrypt preparing decryption) and b
// with kb (encryption only).
func cgoAESInitPair(a, b *cgoAES, ka, kb *[cgoAESKeyLen]byte, withDecrypt bool) {
	a.initGeneric(ka, withDecrypt)
	b.initGeneric(kb, false)
}

func (a *cgoAES) encryptBlock(b *[cgoBlockLen]byte) { a.blk.Encrypt(b[:], b[:]) }

func (a *cgoAES) decryptBlock(b *[cgoBlockLen]byte) {
	a.checkDecrypt()
	a.blk.Decrypt(b[:], b[:])
}

// xorKeyStream XORs len(data) bytes of CTR key stream from iv into data.
// The stream counts in the last byte of the IV only (see cgoCTRCheck).
func (a *cgoAES) xorKeyStream(iv *[cgoBlockLen]byte, data []byte) {
	cgoCTRCheck(iv, len(data))
	a.xorKeyStreamGeneric(iv, data)
}

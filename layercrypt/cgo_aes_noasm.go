//go:build !amd64 || purego

package layercrypt

// Without the amd64 assembly, AES comes from crypto/aes. The variables
// mirror cgo_aes_amd64.go so that the tests build everywhere.
var (
	cgoAESHaveAsm = false
	cgoAESUseAsm  = false
)

// init keys a; withDecrypt also prepares decryption.
func (a *cgoAES) init(key *[cgoAESKeyLen]byte, withDecrypt bool) {
	a.initGeneric(key, withDecrypt)
}

func (a *cgoAES) encryptBlock(b *[cgoBlockLen]byte) { a.blk.Encrypt(b[:], b[:]) }

func (a *cgoAES) decryptBlock(b *[cgoBlockLen]byte) {
	a.checkDecrypt()
	a.blk.Decrypt(b[:], b[:])
}

// ctr fills ks (a whole number of cgoCTRBatchLen) with CTR key stream
// from iv, counting in the last byte of the IV, which must have room for
// len(ks)/16 steps.
func (a *cgoAES) ctr(iv *[cgoBlockLen]byte, ks []byte) {
	if len(ks)%cgoCTRBatchLen != 0 || int(iv[cgoBlockLen-1])+len(ks)/cgoBlockLen > 256 {
		panic("layercrypt: bad CTR request")
	}
	a.ctrGeneric(iv, ks)
}

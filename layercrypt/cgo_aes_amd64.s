//go:build amd64 && !purego

#include "textflag.h"

// AES-128 with AES-NI for CGO (see cgo_aes.go). Round keys are 11 blocks of
// 16 bytes; the decryption keys are those of the equivalent inverse cipher
// (FIPS-197 section 5.3.5), as AESDEC expects. Every function clears the XMM
// registers that held key material or state before returning.

// cgoAESOne adds 1 to the last byte of a counter block (PADDB: no carry).
DATA cgoAESOne<>+0x00(SB)/8, $0
DATA cgoAESOne<>+0x08(SB)/8, $0x0100000000000000
GLOBL cgoAESOne<>(SB), (NOPTR+RODATA), $16

// EXPAND derives the next round key in X0 from the current one in X0 and
// stores it at off(DX). With the current key as words w0..w3 (w0 lowest),
// AESKEYGENASSIST puts SubWord(RotWord(w3)) ^ rcon in dword 3 of X1, PSHUFD
// spreads it to all four dwords as g, and the three shift-and-xor steps turn
// X0 into (w0, w0^w1, w0^w1^w2, w0^w1^w2^w3); xoring g gives w4..w7.
#define EXPAND(rcon, off) \
	AESKEYGENASSIST rcon, X0, X1 \
	PSHUFD $0xff, X1, X1 \
	MOVOU X0, X2 \
	PSLLDQ $4, X2 \
	PXOR X2, X0 \
	PSLLDQ $4, X2 \
	PXOR X2, X0 \
	PSLLDQ $4, X2 \
	PXOR X2, X0 \
	PXOR X1, X0 \
	MOVOU X0, off(DX)

// func cgoAESExpandAsm(key *[16]byte, enc *[11][16]byte)
TEXT ·cgoAESExpandAsm(SB), NOSPLIT, $0-16
	MOVQ  key+0(FP), AX
	MOVQ  enc+8(FP), DX
	MOVOU (AX), X0
	MOVOU X0, 0(DX)
	EXPAND($0x01, 16)
	EXPAND($0x02, 32)
	EXPAND($0x04, 48)
	EXPAND($0x08, 64)
	EXPAND($0x10, 80)
	EXPAND($0x20, 96)
	EXPAND($0x40, 112)
	EXPAND($0x80, 128)
	EXPAND($0x1b, 144)
	EXPAND($0x36, 160)
	PXOR  X0, X0
	PXOR  X1, X1
	PXOR  X2, X2
	RET

// Key expansion with AESENCLAST instead of AESKEYGENASSIST (which is slow
// on many Intel cores): PSHUFB with cgoAESRotWord copies RotWord(w3) into
// every dword, and since all four columns are then equal, ShiftRows does
// nothing and AESENCLAST with rcon in every dword yields
// g = SubWord(RotWord(w3)) ^ rcon in every dword.
DATA cgoAESRotWord<>+0x00(SB)/8, $0x0c0f0e0d0c0f0e0d
DATA cgoAESRotWord<>+0x08(SB)/8, $0x0c0f0e0d0c0f0e0d
GLOBL cgoAESRotWord<>(SB), (NOPTR+RODATA), $16
DATA cgoAESRcon1<>+0x00(SB)/8, $0x0000000100000001
DATA cgoAESRcon1<>+0x08(SB)/8, $0x0000000100000001
GLOBL cgoAESRcon1<>(SB), (NOPTR+RODATA), $16
DATA cgoAESRcon1b<>+0x00(SB)/8, $0x0000001b0000001b
DATA cgoAESRcon1b<>+0x08(SB)/8, $0x0000001b0000001b
GLOBL cgoAESRcon1b<>(SB), (NOPTR+RODATA), $16

// NEXTKEY(key, g, t, off, base) derives the next round key in register key
// (g and t are scratch) with rcon from X4, the RotWord mask in X3, and
// stores it at off(base).
#define NEXTKEY(key, g, t, off, base) \
	MOVOU key, g \
	PSHUFB X3, g \
	AESENCLAST X4, g \
	MOVOU key, t \
	PSLLDQ $4, t \
	PXOR t, key \
	PSLLDQ $4, t \
	PXOR t, key \
	PSLLDQ $4, t \
	PXOR t, key \
	PXOR g, key \
	MOVOU key, off(base)

// func cgoAESExpand2Asm(ka, kb *[16]byte, ea, eb *[11][16]byte)
// Expands two independent keys at once so that their dependency chains
// overlap (CGO always rekeys ET and the PRF together).
TEXT ·cgoAESExpand2Asm(SB), NOSPLIT, $0-32
	MOVQ  ka+0(FP), AX
	MOVQ  kb+8(FP), BX
	MOVQ  ea+16(FP), DX
	MOVQ  eb+24(FP), R9
	MOVOU cgoAESRotWord<>(SB), X3
	MOVOU cgoAESRcon1<>(SB), X4
	MOVOU (AX), X0
	MOVOU (BX), X5
	MOVOU X0, 0(DX)
	MOVOU X5, 0(R9)
	NEXTKEY(X0, X1, X2, 16, DX)
	NEXTKEY(X5, X6, X7, 16, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 32, DX)
	NEXTKEY(X5, X6, X7, 32, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 48, DX)
	NEXTKEY(X5, X6, X7, 48, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 64, DX)
	NEXTKEY(X5, X6, X7, 64, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 80, DX)
	NEXTKEY(X5, X6, X7, 80, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 96, DX)
	NEXTKEY(X5, X6, X7, 96, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 112, DX)
	NEXTKEY(X5, X6, X7, 112, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 128, DX)
	NEXTKEY(X5, X6, X7, 128, R9)
	MOVOU cgoAESRcon1b<>(SB), X4
	NEXTKEY(X0, X1, X2, 144, DX)
	NEXTKEY(X5, X6, X7, 144, R9)
	PSLLL $1, X4
	NEXTKEY(X0, X1, X2, 160, DX)
	NEXTKEY(X5, X6, X7, 160, R9)
	PXOR  X0, X0
	PXOR  X1, X1
	PXOR  X2, X2
	PXOR  X5, X5
	PXOR  X6, X6
	PXOR  X7, X7
	RET

// func cgoAESInvertAsm(enc, dec *[11][16]byte)
// dec[0] = enc[10], dec[i] = InvMixColumns(enc[10-i]) for i = 1..9, dec[10] = enc[0].
TEXT ·cgoAESInvertAsm(SB), NOSPLIT, $0-16
	MOVQ   enc+0(FP), AX
	MOVQ   dec+8(FP), DX
	MOVOU  160(AX), X0
	MOVOU  X0, 0(DX)
	MOVOU  144(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 16(DX)
	MOVOU  128(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 32(DX)
	MOVOU  112(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 48(DX)
	MOVOU  96(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 64(DX)
	MOVOU  80(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 80(DX)
	MOVOU  64(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 96(DX)
	MOVOU  48(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 112(DX)
	MOVOU  32(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 128(DX)
	MOVOU  16(AX), X0
	AESIMC X0, X1
	MOVOU  X1, 144(DX)
	MOVOU  0(AX), X0
	MOVOU  X0, 160(DX)
	PXOR   X0, X0
	PXOR   X1, X1
	RET

// func cgoAESEncryptBlockAsm(enc *[11][16]byte, dst, src *[16]byte)
TEXT ·cgoAESEncryptBlockAsm(SB), NOSPLIT, $0-24
	MOVQ  enc+0(FP), AX
	MOVQ  dst+8(FP), DI
	MOVQ  src+16(FP), SI
	MOVOU (SI), X0
	MOVOU 0(AX), X1
	PXOR  X1, X0
	MOVOU 16(AX), X1
	AESENC X1, X0
	MOVOU 32(AX), X1
	AESENC X1, X0
	MOVOU 48(AX), X1
	AESENC X1, X0
	MOVOU 64(AX), X1
	AESENC X1, X0
	MOVOU 80(AX), X1
	AESENC X1, X0
	MOVOU 96(AX), X1
	AESENC X1, X0
	MOVOU 112(AX), X1
	AESENC X1, X0
	MOVOU 128(AX), X1
	AESENC X1, X0
	MOVOU 144(AX), X1
	AESENC X1, X0
	MOVOU 160(AX), X1
	AESENCLAST X1, X0
	MOVOU X0, (DI)
	PXOR  X0, X0
	PXOR  X1, X1
	RET

// func cgoAESDecryptBlockAsm(dec *[11][16]byte, dst, src *[16]byte)
TEXT ·cgoAESDecryptBlockAsm(SB), NOSPLIT, $0-24
	MOVQ  dec+0(FP), AX
	MOVQ  dst+8(FP), DI
	MOVQ  src+16(FP), SI
	MOVOU (SI), X0
	MOVOU 0(AX), X1
	PXOR  X1, X0
	MOVOU 16(AX), X1
	AESDEC X1, X0
	MOVOU 32(AX), X1
	AESDEC X1, X0
	MOVOU 48(AX), X1
	AESDEC X1, X0
	MOVOU 64(AX), X1
	AESDEC X1, X0
	MOVOU 80(AX), X1
	AESDEC X1, X0
	MOVOU 96(AX), X1
	AESDEC X1, X0
	MOVOU 112(AX), X1
	AESDEC X1, X0
	MOVOU 128(AX), X1
	AESDEC X1, X0
	MOVOU 144(AX), X1
	AESDEC X1, X0
	MOVOU 160(AX), X1
	AESDECLAST X1, X0
	MOVOU X0, (DI)
	PXOR  X0, X0
	PXOR  X1, X1
	RET

// ROUND8 applies one AESENC round with the key at off(AX) to X0..X7.
#define ROUND8(off) \
	MOVOU off(AX), X8 \
	AESENC X8, X0 \
	AESENC X8, X1 \
	AESENC X8, X2 \
	AESENC X8, X3 \
	AESENC X8, X4 \
	AESENC X8, X5 \
	AESENC X8, X6 \
	AESENC X8, X7

// KEYSTREAM8 sets X0..X7 to AES(X12), AES(X12+1), ..., AES(X12+7) and
// advances X12 by 8. Eight independent blocks hide the AESENC latency.
#define KEYSTREAM8 \
	MOVOU X12, X0 \
	PADDB X13, X12 \
	MOVOU X12, X1 \
	PADDB X13, X12 \
	MOVOU X12, X2 \
	PADDB X13, X12 \
	MOVOU X12, X3 \
	PADDB X13, X12 \
	MOVOU X12, X4 \
	PADDB X13, X12 \
	MOVOU X12, X5 \
	PADDB X13, X12 \
	MOVOU X12, X6 \
	PADDB X13, X12 \
	MOVOU X12, X7 \
	PADDB X13, X12 \
	MOVOU 0(AX), X8 \
	PXOR  X8, X0 \
	PXOR  X8, X1 \
	PXOR  X8, X2 \
	PXOR  X8, X3 \
	PXOR  X8, X4 \
	PXOR  X8, X5 \
	PXOR  X8, X6 \
	PXOR  X8, X7 \
	ROUND8(16) \
	ROUND8(32) \
	ROUND8(48) \
	ROUND8(64) \
	ROUND8(80) \
	ROUND8(96) \
	ROUND8(112) \
	ROUND8(128) \
	ROUND8(144) \
	MOVOU 160(AX), X8 \
	AESENCLAST X8, X0 \
	AESENCLAST X8, X1 \
	AESENCLAST X8, X2 \
	AESENCLAST X8, X3 \
	AESENCLAST X8, X4 \
	AESENCLAST X8, X5 \
	AESENCLAST X8, X6 \
	AESENCLAST X8, X7

// func cgoAESCTRXorAsm(enc *[11][16]byte, iv *[16]byte, data *byte, n int)
// XORs n bytes of CTR key stream into data: block i of the stream is
// AES(iv + i), "+ i" adding to the last byte only (the caller makes sure it
// cannot wrap, counting whole batches of 8). Whole 128-byte batches are
// XORed from registers; the last partial batch goes through the 128-byte
// frame, which is zeroed afterwards. X12 is the next counter, X13 the
// increment, X8 the round key or data.
TEXT ·cgoAESCTRXorAsm(SB), NOSPLIT, $128-32
	MOVQ  enc+0(FP), AX
	MOVQ  iv+8(FP), BX
	MOVQ  data+16(FP), DI
	MOVQ  n+24(FP), CX
	MOVOU (BX), X12
	MOVOU cgoAESOne<>(SB), X13

batch:
	CMPQ  CX, $128
	JB    partial
	KEYSTREAM8
	MOVOU 0(DI), X8
	PXOR  X8, X0
	MOVOU X0, 0(DI)
	MOVOU 16(DI), X8
	PXOR  X8, X1
	MOVOU X1, 16(DI)
	MOVOU 32(DI), X8
	PXOR  X8, X2
	MOVOU X2, 32(DI)
	MOVOU 48(DI), X8
	PXOR  X8, X3
	MOVOU X3, 48(DI)
	MOVOU 64(DI), X8
	PXOR  X8, X4
	MOVOU X4, 64(DI)
	MOVOU 80(DI), X8
	PXOR  X8, X5
	MOVOU X5, 80(DI)
	MOVOU 96(DI), X8
	PXOR  X8, X6
	MOVOU X6, 96(DI)
	MOVOU 112(DI), X8
	PXOR  X8, X7
	MOVOU X7, 112(DI)
	ADDQ  $128, DI
	SUBQ  $128, CX
	JMP   batch

partial:
	TESTQ CX, CX
	JZ    done
	KEYSTREAM8
	MOVOU X0, 0(SP)
	MOVOU X1, 16(SP)
	MOVOU X2, 32(SP)
	MOVOU X3, 48(SP)
	MOVOU X4, 64(SP)
	MOVOU X5, 80(SP)
	MOVOU X6, 96(SP)
	MOVOU X7, 112(SP)
	MOVQ  SP, SI

qwords:
	CMPQ  CX, $8
	JB    bytes
	MOVQ  (SI), R8
	XORQ  R8, (DI)
	ADDQ  $8, SI
	ADDQ  $8, DI
	SUBQ  $8, CX
	JMP   qwords

bytes:
	TESTQ CX, CX
	JZ    wipe
	MOVB  (SI), R8
	XORB  R8, (DI)
	INCQ  SI
	INCQ  DI
	DECQ  CX
	JMP   bytes

wipe:
	PXOR  X0, X0
	MOVOU X0, 0(SP)
	MOVOU X0, 16(SP)
	MOVOU X0, 32(SP)
	MOVOU X0, 48(SP)
	MOVOU X0, 64(SP)
	MOVOU X0, 80(SP)
	MOVOU X0, 96(SP)
	MOVOU X0, 112(SP)
	XORQ  R8, R8

done:
	PXOR  X0, X0
	PXOR  X1, X1
	PXOR  X2, X2
	PXOR  X3, X3
	PXOR  X4, X4
	PXOR  X5, X5
	PXOR  X6, X6
	PXOR  X7, X7
	PXOR  X8, X8
	PXOR  X12, X12
	RET

// VAES key stream: four blocks per ZMM register. Lane j of a counter register
// holds the IV plus (4i + j) in its last byte.
DATA cgoVAESLanes<>+0x00(SB)/8, $0
DATA cgoVAESLanes<>+0x08(SB)/8, $0x0000000000000000
DATA cgoVAESLanes<>+0x10(SB)/8, $0
DATA cgoVAESLanes<>+0x18(SB)/8, $0x0100000000000000
DATA cgoVAESLanes<>+0x20(SB)/8, $0
DATA cgoVAESLanes<>+0x28(SB)/8, $0x0200000000000000
DATA cgoVAESLanes<>+0x30(SB)/8, $0
DATA cgoVAESLanes<>+0x38(SB)/8, $0x0300000000000000
GLOBL cgoVAESLanes<>(SB), (NOPTR+RODATA), $64
DATA cgoVAESFour<>+0x00(SB)/8, $0
DATA cgoVAESFour<>+0x08(SB)/8, $0x0400000000000000
GLOBL cgoVAESFour<>(SB), (NOPTR+RODATA), $16

// VROUND4(k) applies one VAESENC round with key register k to Z0..Z3.
#define VROUND4(k) \
	VAESENC k, Z0, Z0 \
	VAESENC k, Z1, Z1 \
	VAESENC k, Z2, Z2 \
	VAESENC k, Z3, Z3

// VKEYSTREAM16 sets Z0..Z3 to 16 blocks of key stream from the counters in
// Z12 (four lanes) and advances Z12 by 16. Z13 holds +4 in every lane;
// Z16..Z26 the round keys, broadcast to all lanes.
#define VKEYSTREAM16 \
	VPXORQ Z16, Z12, Z0 \
	VPADDB Z13, Z12, Z12 \
	VPXORQ Z16, Z12, Z1 \
	VPADDB Z13, Z12, Z12 \
	VPXORQ Z16, Z12, Z2 \
	VPADDB Z13, Z12, Z12 \
	VPXORQ Z16, Z12, Z3 \
	VPADDB Z13, Z12, Z12 \
	VROUND4(Z17) \
	VROUND4(Z18) \
	VROUND4(Z19) \
	VROUND4(Z20) \
	VROUND4(Z21) \
	VROUND4(Z22) \
	VROUND4(Z23) \
	VROUND4(Z24) \
	VROUND4(Z25) \
	VAESENCLAST Z26, Z0, Z0 \
	VAESENCLAST Z26, Z1, Z1 \
	VAESENCLAST Z26, Z2, Z2 \
	VAESENCLAST Z26, Z3, Z3

// func cgoAESCTRXorVAESAsm(enc *[11][16]byte, iv *[16]byte, data *byte, n int)
// cgoAESCTRXorAsm with VAES on ZMM registers, 16 blocks per pass. The last,
// partial pass XORs through byte masks (AVX512BW) instead of a buffer.
TEXT ·cgoAESCTRXorVAESAsm(SB), NOSPLIT, $0-32
	MOVQ            enc+0(FP), AX
	MOVQ            iv+8(FP), BX
	MOVQ            data+16(FP), DI
	MOVQ            n+24(FP), CX
	VBROADCASTI32X4 0(AX), Z16
	VBROADCASTI32X4 16(AX), Z17
	VBROADCASTI32X4 32(AX), Z18
	VBROADCASTI32X4 48(AX), Z19
	VBROADCASTI32X4 64(AX), Z20
	VBROADCASTI32X4 80(AX), Z21
	VBROADCASTI32X4 96(AX), Z22
	VBROADCASTI32X4 112(AX), Z23
	VBROADCASTI32X4 128(AX), Z24
	VBROADCASTI32X4 144(AX), Z25
	VBROADCASTI32X4 160(AX), Z26
	VBROADCASTI32X4 (BX), Z12
	VPADDB          cgoVAESLanes<>(SB), Z12, Z12
	VBROADCASTI32X4 cgoVAESFour<>(SB), Z13

vbatch:
	CMPQ      CX, $256
	JB        vpartial
	VKEYSTREAM16
	VPXORQ    0(DI), Z0, Z0
	VMOVDQU64 Z0, 0(DI)
	VPXORQ    64(DI), Z1, Z1
	VMOVDQU64 Z1, 64(DI)
	VPXORQ    128(DI), Z2, Z2
	VMOVDQU64 Z2, 128(DI)
	VPXORQ    192(DI), Z3, Z3
	VMOVDQU64 Z3, 192(DI)
	ADDQ      $256, DI
	SUBQ      $256, CX
	JMP       vbatch

vpartial:
	TESTQ     CX, CX
	JZ        vdone
	VKEYSTREAM16
	MOVQ      $-1, DX
	CMPQ      CX, $64
	JAE       vfull0
	BZHIQ     CX, DX, R8 // R8 = low CX bits set
	KMOVQ     R8, K1
	VMOVDQU8.Z 0(DI), K1, Z8
	VPXORQ    Z8, Z0, Z0
	VMOVDQU8  Z0, K1, 0(DI)
	JMP       vdone
vfull0:
	VPXORQ    0(DI), Z0, Z0
	VMOVDQU64 Z0, 0(DI)
	SUBQ      $64, CX
	JZ        vdone
	CMPQ      CX, $64
	JAE       vfull1
	BZHIQ     CX, DX, R8 // R8 = low CX bits set
	KMOVQ     R8, K1
	VMOVDQU8.Z 64(DI), K1, Z8
	VPXORQ    Z8, Z1, Z1
	VMOVDQU8  Z1, K1, 64(DI)
	JMP       vdone
vfull1:
	VPXORQ    64(DI), Z1, Z1
	VMOVDQU64 Z1, 64(DI)
	SUBQ      $64, CX
	JZ        vdone
	CMPQ      CX, $64
	JAE       vfull2
	BZHIQ     CX, DX, R8 // R8 = low CX bits set
	KMOVQ     R8, K1
	VMOVDQU8.Z 128(DI), K1, Z8
	VPXORQ    Z8, Z2, Z2
	VMOVDQU8  Z2, K1, 128(DI)
	JMP       vdone
vfull2:
	VPXORQ    128(DI), Z2, Z2
	VMOVDQU64 Z2, 128(DI)
	SUBQ      $64, CX
	JZ        vdone
	CMPQ      CX, $64
	JAE       vfull3
	BZHIQ     CX, DX, R8 // R8 = low CX bits set
	KMOVQ     R8, K1
	VMOVDQU8.Z 192(DI), K1, Z8
	VPXORQ    Z8, Z3, Z3
	VMOVDQU8  Z3, K1, 192(DI)
	JMP       vdone
vfull3:
	VPXORQ    192(DI), Z3, Z3
	VMOVDQU64 Z3, 192(DI)
	SUBQ      $64, CX

vdone:
	VPXORQ    Z0, Z0, Z0
	VPXORQ    Z1, Z1, Z1
	VPXORQ    Z2, Z2, Z2
	VPXORQ    Z3, Z3, Z3
	VPXORQ    Z8, Z8, Z8
	VPXORQ    Z12, Z12, Z12
	VPXORQ    Z16, Z16, Z16
	VPXORQ    Z17, Z17, Z17
	VPXORQ    Z18, Z18, Z18
	VPXORQ    Z19, Z19, Z19
	VPXORQ    Z20, Z20, Z20
	VPXORQ    Z21, Z21, Z21
	VPXORQ    Z22, Z22, Z22
	VPXORQ    Z23, Z23, Z23
	VPXORQ    Z24, Z24, Z24
	VPXORQ    Z25, Z25, Z25
	VPXORQ    Z26, Z26, Z26
	KXORQ     K1, K1, K1
	VZEROUPPER
	RET

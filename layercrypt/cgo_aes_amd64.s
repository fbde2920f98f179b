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

// func cgoAESCTRAsm(enc *[11][16]byte, iv *[16]byte, out *byte, nbatch int)
// Eight counter blocks per pass (X0..X7), so that the AESENC latency of one
// block is hidden behind the other seven. X12 is the next counter, X13 the
// increment, X8 the current round key.
TEXT ·cgoAESCTRAsm(SB), NOSPLIT, $0-32
	MOVQ  enc+0(FP), AX
	MOVQ  iv+8(FP), BX
	MOVQ  out+16(FP), DI
	MOVQ  nbatch+24(FP), CX
	MOVOU (BX), X12
	MOVOU cgoAESOne<>(SB), X13
	TESTQ CX, CX
	JZ    done

batch:
	MOVOU X12, X0
	PADDB X13, X12
	MOVOU X12, X1
	PADDB X13, X12
	MOVOU X12, X2
	PADDB X13, X12
	MOVOU X12, X3
	PADDB X13, X12
	MOVOU X12, X4
	PADDB X13, X12
	MOVOU X12, X5
	PADDB X13, X12
	MOVOU X12, X6
	PADDB X13, X12
	MOVOU X12, X7
	PADDB X13, X12
	MOVOU 0(AX), X8
	PXOR  X8, X0
	PXOR  X8, X1
	PXOR  X8, X2
	PXOR  X8, X3
	PXOR  X8, X4
	PXOR  X8, X5
	PXOR  X8, X6
	PXOR  X8, X7
	ROUND8(16)
	ROUND8(32)
	ROUND8(48)
	ROUND8(64)
	ROUND8(80)
	ROUND8(96)
	ROUND8(112)
	ROUND8(128)
	ROUND8(144)
	MOVOU 160(AX), X8
	AESENCLAST X8, X0
	AESENCLAST X8, X1
	AESENCLAST X8, X2
	AESENCLAST X8, X3
	AESENCLAST X8, X4
	AESENCLAST X8, X5
	AESENCLAST X8, X6
	AESENCLAST X8, X7
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	ADDQ  $128, DI
	DECQ  CX
	JNZ   batch

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

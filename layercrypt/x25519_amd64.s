//go:build amd64 && !purego

#include "go_asm.h"
#include "textflag.h"

// Arithmetic modulo p = 2^255 - 19 with MULX, ADCX and ADOX (BMI2 and
// ADX), and the X25519 Montgomery ladder built on it. See x25519_amd64.go.
//
// A field element is four little-endian 64-bit limbs holding any value
// below 2^256 that is congruent to the element modulo p (the value is not
// kept below p; x25519Freeze does that once, at the end). Since
// 2^256 = 2 * 2^255 = 2 * 19 = 38 (mod p), a carry out of bit 256 is
// folded back in by adding 38, and the upper half of a 512-bit product by
// multiplying it by 38.
//
// Nothing here branches on or indexes memory by secret data: carries are
// turned into masks with SBB, the conditional swap is a masked XOR, and
// the only branches count loop iterations.
//
// Register use by the macros: R8-R15 hold the product (R8-R11 the result),
// DX the MULX multiplier, AX and BX scratch, CX zero. Operands are memory
// operands of the form off(REG) so that the macros can address limbs as
// 8+x.

// MULPROD sets R8..R15 to the 512-bit product x*y: row 0 with one carry
// chain, rows 1-3 adding their low halves on the CF chain (ADCX) and their
// high halves on the OF chain (ADOX). Sets CX to zero.
#define MULPROD(x, y) \
	XORQ  CX, CX; \
	MOVQ  0+x, DX; \
	MULXQ 0+y, R8, R9; \
	MULXQ 8+y, AX, R10; \
	ADDQ  AX, R9; \
	MULXQ 16+y, AX, R11; \
	ADCQ  AX, R10; \
	MULXQ 24+y, AX, R12; \
	ADCQ  AX, R11; \
	ADCQ  $0, R12; \
	\
	MOVQ  8+x, DX; \
	XORQ  R13, R13; \
	MULXQ 0+y, AX, BX; \
	ADCXQ AX, R9; \
	ADOXQ BX, R10; \
	MULXQ 8+y, AX, BX; \
	ADCXQ AX, R10; \
	ADOXQ BX, R11; \
	MULXQ 16+y, AX, BX; \
	ADCXQ AX, R11; \
	ADOXQ BX, R12; \
	MULXQ 24+y, AX, BX; \
	ADCXQ AX, R12; \
	ADOXQ BX, R13; \
	ADCXQ CX, R13; \
	\
	MOVQ  16+x, DX; \
	XORQ  R14, R14; \
	MULXQ 0+y, AX, BX; \
	ADCXQ AX, R10; \
	ADOXQ BX, R11; \
	MULXQ 8+y, AX, BX; \
	ADCXQ AX, R11; \
	ADOXQ BX, R12; \
	MULXQ 16+y, AX, BX; \
	ADCXQ AX, R12; \
	ADOXQ BX, R13; \
	MULXQ 24+y, AX, BX; \
	ADCXQ AX, R13; \
	ADOXQ BX, R14; \
	ADCXQ CX, R14; \
	\
	MOVQ  24+x, DX; \
	XORQ  R15, R15; \
	MULXQ 0+y, AX, BX; \
	ADCXQ AX, R11; \
	ADOXQ BX, R12; \
	MULXQ 8+y, AX, BX; \
	ADCXQ AX, R12; \
	ADOXQ BX, R13; \
	MULXQ 16+y, AX, BX; \
	ADCXQ AX, R13; \
	ADOXQ BX, R14; \
	MULXQ 24+y, AX, BX; \
	ADCXQ AX, R14; \
	ADOXQ BX, R15; \
	ADCXQ CX, R15

// SQRPROD sets R8..R15 to the 512-bit square of x: the six cross products
// once, doubled on the OF chain while the four squares are added on the CF
// chain. Sets CX to zero.
#define SQRPROD(x) \
	MOVQ  0+x, DX; \
	MULXQ 8+x, R9, R10; \
	MULXQ 16+x, AX, R11; \
	ADDQ  AX, R10; \
	MULXQ 24+x, AX, R12; \
	ADCQ  AX, R11; \
	ADCQ  $0, R12; \
	\
	MOVQ  8+x, DX; \
	XORQ  CX, CX; \
	XORQ  R13, R13; \
	MULXQ 16+x, AX, BX; \
	ADCXQ AX, R11; \
	ADOXQ BX, R12; \
	MULXQ 24+x, AX, BX; \
	ADCXQ AX, R12; \
	ADOXQ BX, R13; \
	MOVQ  16+x, DX; \
	MULXQ 24+x, AX, R14; \
	ADCXQ AX, R13; \
	ADCXQ CX, R14; \
	\
	MOVQ  0+x, DX; \
	XORQ  CX, CX; \
	MULXQ DX, R8, AX; \
	ADOXQ R9, R9; \
	ADCXQ AX, R9; \
	MOVQ  8+x, DX; \
	MULXQ DX, AX, BX; \
	ADOXQ R10, R10; \
	ADCXQ AX, R10; \
	ADOXQ R11, R11; \
	ADCXQ BX, R11; \
	MOVQ  16+x, DX; \
	MULXQ DX, AX, BX; \
	ADOXQ R12, R12; \
	ADCXQ AX, R12; \
	ADOXQ R13, R13; \
	ADCXQ BX, R13; \
	MOVQ  24+x, DX; \
	MULXQ DX, AX, R15; \
	ADOXQ R14, R14; \
	ADCXQ AX, R14; \
	ADOXQ CX, R15; \
	ADCXQ CX, R15

// REDUCE folds R8..R15 to R8..R11, congruent modulo p: the upper four
// limbs times 38 are added to the lower four, the resulting fifth limb
// (at most 39) times 38 once more, and a last carry out as 38 (after a
// carry out the value is below 2^12, so that addition cannot carry).
#define REDUCE \
	MOVQ   $38, DX; \
	XORQ   CX, CX; \
	MULXQ  R12, AX, R12; \
	ADCXQ  AX, R8; \
	ADOXQ  R12, R9; \
	MULXQ  R13, AX, R13; \
	ADCXQ  AX, R9; \
	ADOXQ  R13, R10; \
	MULXQ  R14, AX, R14; \
	ADCXQ  AX, R10; \
	ADOXQ  R14, R11; \
	MULXQ  R15, AX, R15; \
	ADCXQ  AX, R11; \
	ADOXQ  CX, R15; \
	ADCXQ  CX, R15; \
	IMUL3Q $38, R15, R15; \
	ADDQ   R15, R8; \
	ADCQ   CX, R9; \
	ADCQ   CX, R10; \
	ADCQ   CX, R11; \
	SBBQ   AX, AX; \
	ANDQ   $38, AX; \
	ADDQ   AX, R8

// STORE writes R8..R11 to z.
#define STORE(z) \
	MOVQ R8, 0+z; \
	MOVQ R9, 8+z; \
	MOVQ R10, 16+z; \
	MOVQ R11, 24+z

// MUL sets z = x*y. z may be x or y.
#define MUL(z, x, y) \
	MULPROD(x, y); \
	REDUCE; \
	STORE(z)

// SQR sets z = x*x. z may be x.
#define SQR(z, x) \
	SQRPROD(x); \
	REDUCE; \
	STORE(z)

// ADD sets z = x+y. z may be x or y. A carry out of bit 256 adds 38; a
// second one leaves a value below 38, so the last addition cannot carry.
#define ADD(z, x, y) \
	MOVQ 0+x, R8; \
	MOVQ 8+x, R9; \
	MOVQ 16+x, R10; \
	MOVQ 24+x, R11; \
	ADDQ 0+y, R8; \
	ADCQ 8+y, R9; \
	ADCQ 16+y, R10; \
	ADCQ 24+y, R11; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	ADDQ AX, R8; \
	ADCQ $0, R9; \
	ADCQ $0, R10; \
	ADCQ $0, R11; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	ADDQ AX, R8; \
	STORE(z)

// SUB sets z = x-y. z may be x or y. A borrow (the result wrapped by
// 2^256 = 38) subtracts 38; after a second one the value is at least
// 2^256 - 38, so the last subtraction cannot borrow.
#define SUB(z, x, y) \
	MOVQ 0+x, R8; \
	MOVQ 8+x, R9; \
	MOVQ 16+x, R10; \
	MOVQ 24+x, R11; \
	SUBQ 0+y, R8; \
	SBBQ 8+y, R9; \
	SBBQ 16+y, R10; \
	SBBQ 24+y, R11; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	SUBQ AX, R8; \
	SBBQ $0, R9; \
	SBBQ $0, R10; \
	SBBQ $0, R11; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	SUBQ AX, R8; \
	STORE(z)

// MULA24 sets z = 121665*x, 121665 = (486662 - 2) / 4 being the ladder
// constant a24 of RFC 7748. The fifth limb is below 2^17.
#define MULA24(z, x) \
	MOVQ   $121665, DX; \
	MULXQ  0+x, R8, R9; \
	MULXQ  8+x, AX, R10; \
	ADDQ   AX, R9; \
	MULXQ  16+x, AX, R11; \
	ADCQ   AX, R10; \
	MULXQ  24+x, AX, R12; \
	ADCQ   AX, R11; \
	ADCQ   $0, R12; \
	IMUL3Q $38, R12, R12; \
	ADDQ   R12, R8; \
	ADCQ   $0, R9; \
	ADCQ   $0, R10; \
	ADCQ   $0, R11; \
	SBBQ   AX, AX; \
	ANDQ   $38, AX; \
	ADDQ   AX, R8; \
	STORE(z)

// ADDR sets r0..r3 = x+y, folding carries as ADD does.
#define ADDR(x, y, r0, r1, r2, r3) \
	MOVQ 0+x, r0; \
	MOVQ 8+x, r1; \
	MOVQ 16+x, r2; \
	MOVQ 24+x, r3; \
	ADDQ 0+y, r0; \
	ADCQ 8+y, r1; \
	ADCQ 16+y, r2; \
	ADCQ 24+y, r3; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	ADDQ AX, r0; \
	ADCQ $0, r1; \
	ADCQ $0, r2; \
	ADCQ $0, r3; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	ADDQ AX, r0

// SUBR sets r0..r3 = x-y, folding borrows as SUB does.
#define SUBR(x, y, r0, r1, r2, r3) \
	MOVQ 0+x, r0; \
	MOVQ 8+x, r1; \
	MOVQ 16+x, r2; \
	MOVQ 24+x, r3; \
	SUBQ 0+y, r0; \
	SBBQ 8+y, r1; \
	SBBQ 16+y, r2; \
	SBBQ 24+y, r3; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	SUBQ AX, r0; \
	SBBQ $0, r1; \
	SBBQ $0, r2; \
	SBBQ $0, r3; \
	SBBQ AX, AX; \
	ANDQ $38, AX; \
	SUBQ AX, r0

// SWAPR swaps R8..R11 with R12..R15 if the mask at m is all ones and
// leaves them if it is zero, with the same instructions either way.
#define SWAPR(m) \
	MOVQ R8, BX; \
	XORQ R12, BX; \
	ANDQ m, BX; \
	XORQ BX, R8; \
	XORQ BX, R12; \
	MOVQ R9, BX; \
	XORQ R13, BX; \
	ANDQ m, BX; \
	XORQ BX, R9; \
	XORQ BX, R13; \
	MOVQ R10, BX; \
	XORQ R14, BX; \
	ANDQ m, BX; \
	XORQ BX, R10; \
	XORQ BX, R14; \
	MOVQ R11, BX; \
	XORQ R15, BX; \
	ANDQ m, BX; \
	XORQ BX, R11; \
	XORQ BX, R15

// STORE2 writes R12..R15 to z.
#define STORE2(z) \
	MOVQ R12, 0+z; \
	MOVQ R13, 8+z; \
	MOVQ R14, 16+z; \
	MOVQ R15, 24+z

// CSWAP swaps a and b if AX is all ones and leaves them if it is zero,
// with the same instructions and memory accesses either way.
#define CSWAP(a, b) \
	MOVQ 0+a, R8; \
	MOVQ 0+b, R9; \
	MOVQ 8+a, R10; \
	MOVQ 8+b, R11; \
	MOVQ 16+a, R12; \
	MOVQ 16+b, R13; \
	MOVQ 24+a, R14; \
	MOVQ 24+b, R15; \
	MOVQ R8, BX; \
	XORQ R9, BX; \
	ANDQ AX, BX; \
	XORQ BX, R8; \
	XORQ BX, R9; \
	MOVQ R10, BX; \
	XORQ R11, BX; \
	ANDQ AX, BX; \
	XORQ BX, R10; \
	XORQ BX, R11; \
	MOVQ R12, BX; \
	XORQ R13, BX; \
	ANDQ AX, BX; \
	XORQ BX, R12; \
	XORQ BX, R13; \
	MOVQ R14, BX; \
	XORQ R15, BX; \
	ANDQ AX, BX; \
	XORQ BX, R14; \
	XORQ BX, R15; \
	MOVQ R8, 0+a; \
	MOVQ R9, 0+b; \
	MOVQ R10, 8+a; \
	MOVQ R11, 8+b; \
	MOVQ R12, 16+a; \
	MOVQ R13, 16+b; \
	MOVQ R14, 24+a; \
	MOVQ R15, 24+b

// WIPE zeroes the general registers that held secrets.
#define WIPE \
	XORQ AX, AX; \
	XORQ BX, BX; \
	XORQ CX, CX; \
	XORQ DX, DX; \
	XORQ R8, R8; \
	XORQ R9, R9; \
	XORQ R10, R10; \
	XORQ R11, R11; \
	XORQ R12, R12; \
	XORQ R13, R13; \
	XORQ R14, R14; \
	XORQ R15, R15

// func x25519MulAsm(z, x, y *x25519Elem)
TEXT ·x25519MulAsm(SB), NOSPLIT, $0-24
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	MULPROD(0(SI), 0(DI))
	REDUCE
	MOVQ z+0(FP), DI
	STORE(0(DI))
	WIPE
	RET

// func x25519SqrNAsm(z *x25519Elem, n int)
TEXT ·x25519SqrNAsm(SB), NOSPLIT, $0-16
	MOVQ z+0(FP), DI
	MOVQ n+8(FP), SI
	TESTQ SI, SI
	JLE   sqrdone

sqrloop:
	SQR(0(DI), 0(DI))
	DECQ SI
	JNZ  sqrloop

sqrdone:
	WIPE
	RET

// func x25519AddAsm(z, x, y *x25519Elem)
TEXT ·x25519AddAsm(SB), NOSPLIT, $0-24
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	MOVQ z+0(FP), DX
	ADD(0(DX), 0(SI), 0(DI))
	WIPE
	RET

// func x25519SubAsm(z, x, y *x25519Elem)
TEXT ·x25519SubAsm(SB), NOSPLIT, $0-24
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	MOVQ z+0(FP), DX
	SUB(0(DX), 0(SI), 0(DI))
	WIPE
	RET

// func x25519MulA24Asm(z, x *x25519Elem)
TEXT ·x25519MulA24Asm(SB), NOSPLIT, $0-16
	MOVQ x+8(FP), SI
	MOVQ z+0(FP), DI
	MULA24(0(DI), 0(SI))
	WIPE
	RET

// The ladder's work area (x25519Ladder in x25519_amd64.go), addressed
// from DI with the field offsets from go_asm.h.
#define LX1 x25519Ladder_x1(DI)
#define LX2 x25519Ladder_x2(DI)
#define LZ2 x25519Ladder_z2(DI)
#define LX3 x25519Ladder_x3(DI)
#define LZ3 x25519Ladder_z3(DI)
#define LA x25519Ladder_a(DI)
#define LB x25519Ladder_b(DI)
#define LC x25519Ladder_c(DI)
#define LD x25519Ladder_d(DI)
#define LAA x25519Ladder_aa(DI)
#define LBB x25519Ladder_bb(DI)
#define LE x25519Ladder_e(DI)
#define LDA x25519Ladder_da(DI)
#define LCB x25519Ladder_cb(DI)
#define LK x25519Ladder_k(DI)
#define LSWAP x25519Ladder_swap(DI)
#define LMASK x25519Ladder_mask(DI)

// func x25519LadderAsm(l *x25519Ladder)
//
// Runs the Montgomery ladder of RFC 7748 section 5 over bits 254..0 of
// the clamped scalar at LK, from the x1, x2, z2, x3, z3 the caller set up,
// and leaves (x2, z2) after the final conditional swap. The loop counter
// and the bit index are public; the scalar bits only ever become masks.
TEXT ·x25519LadderAsm(SB), NOSPLIT, $0-8
	MOVQ l+0(FP), DI
	MOVQ $0, LSWAP
	MOVQ $254, SI

ladderloop:
	// bit = k >> t & 1; mask = -(swap ^ bit); swap = bit.
	MOVQ  SI, CX
	SHRQ  $6, CX
	MOVQ  x25519Ladder_k(DI)(CX*8), BX
	MOVQ  SI, CX
	SHRQ  CX, BX
	ANDQ  $1, BX
	MOVQ  LSWAP, AX
	XORQ  BX, AX
	MOVQ  BX, LSWAP
	NEGQ  AX
	MOVQ  AX, LMASK

	// The RFC 7748 step. Swapping (x2, z2) with (x3, z3) first is the same
	// as swapping (A, B) with (C, D) after computing them, which SWAPR
	// does in registers: the swapped state never goes through memory. The
	// steps below are ordered so that the independent chains (x3, z3, x2,
	// z2) alternate, which lets the CPU overlap their carry chains.
	ADDR(LX2, LZ2, R8, R9, R10, R11)
	ADDR(LX3, LZ3, R12, R13, R14, R15)
	SWAPR(LMASK)
	STORE(LA)
	STORE2(LC)
	SUBR(LX2, LZ2, R8, R9, R10, R11)
	SUBR(LX3, LZ3, R12, R13, R14, R15)
	SWAPR(LMASK)
	STORE(LB)
	STORE2(LD)
	MUL(LDA, LD, LA)
	MUL(LCB, LC, LB)
	SQR(LAA, LA)
	SQR(LBB, LB)
	ADD(LX3, LDA, LCB)
	SUB(LZ3, LDA, LCB)
	SQR(LX3, LX3)
	SQR(LZ3, LZ3)
	SUB(LE, LAA, LBB)
	MULA24(LZ2, LE)
	MUL(LX2, LAA, LBB)
	ADD(LZ2, LAA, LZ2)
	MUL(LZ3, LX1, LZ3)
	MUL(LZ2, LE, LZ2)

	SUBQ $1, SI
	JGE  ladderloop

	MOVQ LSWAP, AX
	NEGQ AX
	CSWAP(LX2, LX3)
	CSWAP(LZ2, LZ3)
	MOVQ $0, LSWAP
	MOVQ $0, LMASK
	WIPE
	RET

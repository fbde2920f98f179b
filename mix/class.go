package mix

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Class is a delay class: the number a client sends in the ntor-v3 extension
// to choose how much mixing delay each relay adds to its circuit. Classes are
// few and shared by every client so that choosing one does not split the
// anonymity set; what a class means in time is each relay's own ClassSpec.
type Class uint8

// The delay classes every relay knows.
const (
	// ClassInteractive adds no delay (mean 0). Circuit code bypasses the
	// scheduler entirely for it.
	ClassInteractive Class = 0
	// ClassBalanced adds a few milliseconds per hop.
	ClassBalanced Class = 1
	// ClassHighLatency adds hundreds of milliseconds per hop.
	ClassHighLatency Class = 2
)

// String returns the class's name, used as the "class" label of metrics.
func (c Class) String() string {
	switch c {
	case ClassInteractive:
		return "interactive"
	case ClassBalanced:
		return "balanced"
	case ClassHighLatency:
		return "high-latency"
	}
	return "class-" + strconv.Itoa(int(c))
}

// Default means and the cap factor used by DefaultClasses and WithDefaults.
const (
	DefaultBalancedMean    = 5 * time.Millisecond
	DefaultHighLatencyMean = 250 * time.Millisecond
	// DefaultCapFactor is the cap on one sampled delay, as a multiple of the
	// class's mean, when a ClassSpec leaves Cap zero.
	DefaultCapFactor = 10
	// MaxMean is the largest mean any relay may configure for a class; a
	// relay's own configured maximum should be at or below it.
	MaxMean = 10 * time.Second
	// MaxCap is the largest per-cell delay cap.
	MaxCap = 100 * time.Second
)

// ClassSpec is what one delay class means on this relay. Each cell's added
// delay is drawn from an exponential distribution with mean Mean and then
// clamped to Cap, so the distribution actually used is the exponential
// truncated at Cap, with the tail's probability e^(-Cap/Mean) placed on Cap
// itself: min(Exp(Mean), Cap), whose mean is Mean x (1 - e^(-Cap/Mean)).
// With the default Cap of 10 x Mean, about 0.005% of draws are clamped and
// the mean is 0.99995 x Mean; clamped draws are counted in the metrics.
type ClassSpec struct {
	// Class names the spec in metrics; it has no effect on delays.
	Class Class
	// Mean is the mean added delay per cell; 0 means no added delay.
	Mean time.Duration
	// Cap is the largest delay one cell can get. 0 means
	// DefaultCapFactor x Mean.
	Cap time.Duration
}

// DefaultClasses returns the default meaning of each delay class:
// interactive 0, balanced 5 ms (cap 50 ms), high-latency 250 ms (cap 2.5 s).
func DefaultClasses() map[Class]ClassSpec {
	return map[Class]ClassSpec{
		ClassInteractive: {Class: ClassInteractive},
		ClassBalanced:    {Class: ClassBalanced, Mean: DefaultBalancedMean, Cap: DefaultCapFactor * DefaultBalancedMean},
		ClassHighLatency: {Class: ClassHighLatency, Mean: DefaultHighLatencyMean, Cap: DefaultCapFactor * DefaultHighLatencyMean},
	}
}

// ErrBadClassSpec is returned by ClassSpec.Validate.
var ErrBadClassSpec = errors.New("mix: invalid delay class")

// WithDefaults returns the spec with a zero Cap replaced by
// DefaultCapFactor x Mean.
func (c ClassSpec) WithDefaults() ClassSpec {
	if c.Cap == 0 && c.Mean > 0 {
		c.Cap = DefaultCapFactor * c.Mean
	}
	return c
}

// Validate reports whether the spec (after WithDefaults) is usable: a mean
// in [0, MaxMean] and a cap in [Mean, MaxCap]. A relay validates its
// configured classes with it when loading its config; NewQueue panics on a
// spec that fails it.
func (c ClassSpec) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.Mean < 0:
		return fmt.Errorf("%w %s: mean %v is negative; use 0 for no delay", ErrBadClassSpec, c.Class, c.Mean)
	case c.Mean > MaxMean:
		return fmt.Errorf("%w %s: mean %v is above the maximum %v", ErrBadClassSpec, c.Class, c.Mean, MaxMean)
	case c.Cap < c.Mean:
		return fmt.Errorf("%w %s: cap %v is below the mean %v; use at least the mean (0 means %dx the mean)",
			ErrBadClassSpec, c.Class, c.Cap, c.Mean, DefaultCapFactor)
	case c.Cap > MaxCap:
		return fmt.Errorf("%w %s: cap %v is above the maximum %v", ErrBadClassSpec, c.Class, c.Cap, MaxCap)
	}
	return nil
}

// sampleDelay draws one cell's added delay: Exp(mean) clamped to cap. It
// reports whether the clamp applied.
func sampleDelay(r *rand.Rand, spec ClassSpec) (d time.Duration, capped bool) {
	if spec.Mean <= 0 {
		return 0, false
	}
	x := r.ExpFloat64() * float64(spec.Mean)
	if x >= float64(spec.Cap) {
		return spec.Cap, true
	}
	return time.Duration(x), false
}

package demo

import (
	"math/rand/v2"
	"sync"
)

// Randomness: the per-part random streams and the sensor and value noise.

// noiseTile is a fixed table of standard normal values sampled at a random
// offset per part: per-pixel NormFloat64 calls would cost more than the
// rest of the rendering together.
var (
	noiseOnce sync.Once
	noiseTile []float32
)

const noiseTileBits = 20

func sensorNoise() []float32 {
	noiseOnce.Do(func() {
		rng := rand.New(rand.NewPCG(0x5e6ad, 0x7e11))
		noiseTile = make([]float32, 1<<noiseTileBits)
		for i := range noiseTile {
			noiseTile[i] = float32(rng.NormFloat64())
		}
	})
	return noiseTile
}

// valueNoise is smooth random texture: a coarse random grid interpolated
// bilinearly. Rendering goes row by row: setRow interpolates the grid
// vertically once per row, then at(x) is one horizontal lerp, which keeps
// the texture cheap enough to draw on every pixel.
type valueNoise struct {
	n     int
	v     []float32
	scale float64   // grid cells per pixel
	ix    []int32   // per pixel column: left grid column
	fx    []float32 // per pixel column: weight of the right one
	row   []float32 // the current row, interpolated vertically
}

func newValueNoise(r *rand.Rand, n, size int) valueNoise {
	vn := valueNoise{n: n, v: make([]float32, n*n), scale: float64(n-1) / float64(size),
		ix: make([]int32, size), fx: make([]float32, size), row: make([]float32, n)}
	for i := range vn.v {
		vn.v[i] = float32(2*r.Float64() - 1)
	}
	for x := 0; x < size; x++ {
		g := (float64(x) + 0.5) * vn.scale
		i := min(int(g), n-2)
		vn.ix[x], vn.fx[x] = int32(i), float32(g-float64(i))
	}
	return vn
}

// setRow prepares at for pixel row y.
func (vn *valueNoise) setRow(y int) {
	g := (float64(y) + 0.5) * vn.scale
	i := min(int(g), vn.n-2)
	f := float32(g - float64(i))
	top, bot := vn.v[i*vn.n:(i+1)*vn.n], vn.v[(i+1)*vn.n:(i+2)*vn.n]
	for j := range vn.row {
		vn.row[j] = top[j] + (bot[j]-top[j])*f
	}
}

// at is the texture at pixel column x of the row set by setRow.
func (vn *valueNoise) at(x int) float32 {
	i := vn.ix[x]
	a := vn.row[i]
	return a + (vn.row[i+1]-a)*vn.fx[x]
}

// splitmix64 decorrelates (index, stream) pairs into PCG stream selectors.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Streams of a part: the natural variation and the defect draw from
// separate generators, so a defect never changes the part it is put on.
const (
	streamNatural = 1
	streamDefect  = 2
)

func partRand(seed, index uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, splitmix64(index<<2|stream)))
}

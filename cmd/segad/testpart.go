package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
)

// testPartPNG encodes a 640x480 textured gray test part for commands that
// need a frame when the user gives none (bench).
func testPartPNG() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	rng := rand.New(rand.NewPCG(1, 1))
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			dx, dy := float64(x-320), float64(y-240)
			v := 90 + rng.IntN(20)
			if dx*dx+dy*dy < 180*180 {
				v = 160 + rng.IntN(30)
			}
			img.Set(x, y, color.RGBA{uint8(v), uint8(v), uint8(v), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

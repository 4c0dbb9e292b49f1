package detector

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// opsetVersion is the ai.onnx opset the written graphs use. 12 because the
// shared MobileNetV2 backbone is opset 12 and its nodes are copied verbatim:
// raising the opset would silently change the semantics ORT applies to them
// (and ReduceSum/ReduceMin keep their axes as attributes at 12).
const opsetVersion = 12

// irVersion 7 is the IR that goes with opset 12.
const irVersion = 7

// graphBuilder accumulates nodes and initializers for one ONNX graph so that
// the kinds only say what they compute, not how protobuf spells it.
type graphBuilder struct {
	nodes []*onnx.NodeProto
	inits []*onnx.TensorProto
	n     int
}

// name returns a fresh tensor name with the given prefix, so that generated
// names never clash with the backbone's numeric tensor names.
func (b *graphBuilder) name(prefix string) string {
	b.n++
	return "segad_" + prefix + "_" + strconv.Itoa(b.n)
}

// floatInit adds a float32 initializer and returns its name.
func (b *graphBuilder) floatInit(prefix string, dims []int64, data []float32) string {
	n := b.name(prefix)
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	b.inits = append(b.inits, &onnx.TensorProto{
		Name: n, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), RawData: raw,
	})
	return n
}

// rawInit adds an initializer of any element type from little-endian raw
// bytes (the uint8 tensors of the int8 search) and returns its name. nil
// dims make a scalar.
func (b *graphBuilder) rawInit(prefix string, dt onnx.TensorProto_DataType, dims []int64, raw []byte) string {
	n := b.name(prefix)
	b.inits = append(b.inits, &onnx.TensorProto{Name: n, Dims: dims, DataType: int32(dt), RawData: raw})
	return n
}

// int64Init adds an int64 initializer (shapes, pads, sizes) and returns its name.
func (b *graphBuilder) int64Init(prefix string, data []int64) string {
	n := b.name(prefix)
	b.inits = append(b.inits, &onnx.TensorProto{
		Name: n, Dims: []int64{int64(len(data))}, DataType: int32(onnx.TensorProto_INT64), Int64Data: data,
	})
	return n
}

// node appends a node with a single fresh output and returns that output.
func (b *graphBuilder) node(op string, inputs []string, attrs ...*onnx.AttributeProto) string {
	out := b.name(op)
	b.nodeTo(op, inputs, out, attrs...)
	return out
}

// nodeTo appends a node writing to a given output name (graph outputs).
func (b *graphBuilder) nodeTo(op string, inputs []string, out string, attrs ...*onnx.AttributeProto) {
	b.nodes = append(b.nodes, &onnx.NodeProto{
		OpType: op, Input: inputs, Output: []string{out}, Name: out + "_node", Attribute: attrs,
	})
}

func attrInts(name string, v ...int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INTS, Ints: v}
}

func attrInt(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: v}
}

func attrString(name, v string) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_STRING, S: []byte(v)}
}

// floatValueInfo describes a float32 tensor of static shape (graph inputs/outputs).
func floatValueInfo(name string, dims ...int64) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{
			Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d},
		})
	}
	return &onnx.ValueInfoProto{
		Name: name,
		Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
			ElemType: int32(onnx.TensorProto_FLOAT), Shape: shape,
		}}},
	}
}

// gaussianKernel1D returns the normalised 1-D Gaussian kernel anomalib's
// GaussianBlur2d uses: size 2*int(4*sigma+0.5)+1.
func gaussianKernel1D(sigma float64) []float32 {
	half := int(4*sigma + 0.5)
	k := make([]float64, 2*half+1)
	var sum float64
	for i := range k {
		x := float64(i - half)
		k[i] = math.Exp(-x * x / (2 * sigma * sigma))
		sum += k[i]
	}
	out := make([]float32, len(k))
	for i := range k {
		out[i] = float32(k[i] / sum)
	}
	return out
}

// blur appends a separable Gaussian blur of a [1,1,H,W] tensor with reflect
// padding (kornia's border_type "reflect", as in anomalib). Two 1-D Convs
// instead of one 2-D kernel: 2*33 instead of 33*33 multiply-adds per pixel.
// The image must be larger than the padding (reflect needs pad < size).
func (b *graphBuilder) blur(in string, sigma float64, out string) {
	k := gaussianKernel1D(sigma)
	half := int64(len(k) / 2)
	pads := b.int64Init("blur_pads", []int64{0, 0, half, half, 0, 0, half, half})
	padded := b.node("Pad", []string{in, pads}, attrString("mode", "reflect"))
	kh := b.floatInit("blur_kx", []int64{1, 1, 1, int64(len(k))}, k)
	kv := b.floatInit("blur_ky", []int64{1, 1, int64(len(k)), 1}, k)
	h := b.node("Conv", []string{padded, kh})
	b.nodeTo("Conv", []string{h, kv}, out)
}

// model wraps the builder's graph into a ModelProto with the given inputs,
// outputs and metadata, with the opset imports extra adds (backbone domains).
func (b *graphBuilder) model(name string, inputs, outputs []*onnx.ValueInfoProto, meta map[string]string, extraOpsets []*onnx.OperatorSetIdProto) *onnx.ModelProto {
	opsets := []*onnx.OperatorSetIdProto{{Domain: "", Version: opsetVersion}}
	opsets = append(opsets, extraOpsets...)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var props []*onnx.StringStringEntryProto
	for _, k := range keys {
		props = append(props, &onnx.StringStringEntryProto{Key: k, Value: meta[k]})
	}
	return &onnx.ModelProto{
		IrVersion:       irVersion,
		OpsetImport:     opsets,
		ProducerName:    "segad-edge",
		ProducerVersion: Version,
		Domain:          "io.github.segad-edge",
		DocString:       "anomaly detector fitted by `segad detector fit`; output is a raw (unnormalised) anomaly map",
		MetadataProps:   props,
		Graph: &onnx.GraphProto{
			Name:        name,
			Node:        b.nodes,
			Initializer: b.inits,
			Input:       inputs,
			Output:      outputs,
		},
	}
}

// marshalModel serialises a model; deterministic so that fitting twice with
// the same seed gives byte-identical files.
func marshalModel(m *onnx.ModelProto) ([]byte, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal ONNX model %s: %w", m.GetGraph().GetName(), err)
	}
	return data, nil
}

// Version is recorded as the producer version of written models; the
// command sets it from its build version.
var Version = "dev"

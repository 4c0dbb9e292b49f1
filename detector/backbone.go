package detector

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// backbone is a pretrained ONNX feature extractor cut down to the nodes that
// compute the requested intermediate tensors.
type backbone struct {
	path    string
	sha256  string
	input   string                     // the backbone's own image input name
	nodes   []*onnx.NodeProto          // pruned, in the original (topological) order
	inits   []*onnx.TensorProto        // initializers the pruned nodes use
	opsets  []*onnx.OperatorSetIdProto // non-default domains (com.microsoft for QLinear ops)
	layers  []string
	dequant []quantParams // per layer; zero value when the tensor is float
}

// quantParams names the scale and zero-point tensors of a quantized tensor.
type quantParams struct {
	scale, zeroPoint string
}

// outputQuantInputs gives, per quantized op, the input positions of the
// output's scale and zero point (ONNX / com.microsoft operator specs).
var outputQuantInputs = map[string][2]int{
	"QuantizeLinear":           {1, 2},
	"QLinearConv":              {6, 7},
	"QLinearMatMul":            {6, 7},
	"QLinearAdd":               {6, 7},
	"QLinearMul":               {6, 7},
	"QLinearGlobalAveragePool": {3, 4},
	"QLinearAveragePool":       {3, 4},
	"QLinearLeakyRelu":         {3, 4},
	"QLinearSigmoid":           {3, 4},
	"QLinearConcat":            {0, 1},
}

// loadBackbone reads the backbone ONNX file and keeps what computing layers
// needs. It fails, naming the file, when a layer is not a tensor of the graph.
func loadBackbone(path string, layers []string) (*backbone, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read backbone: %w", err)
	}
	var m onnx.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse backbone %s as ONNX: %w", path, err)
	}
	g := m.GetGraph()
	if g == nil || len(g.GetNode()) == 0 {
		return nil, fmt.Errorf("backbone %s: ONNX file has no graph nodes", path)
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("backbone %s: no feature layers named (e.g. --layers 365_quantized,426_quantized)", path)
	}
	sum := sha256.Sum256(data)
	bb := &backbone{path: path, sha256: hex.EncodeToString(sum[:]), layers: layers}

	initByName := map[string]*onnx.TensorProto{}
	for _, t := range g.GetInitializer() {
		initByName[t.GetName()] = t
	}
	var inputs []string
	for _, in := range g.GetInput() {
		if _, isInit := initByName[in.GetName()]; !isInit {
			inputs = append(inputs, in.GetName())
		}
	}
	if len(inputs) != 1 {
		return nil, fmt.Errorf("backbone %s: expected one image input, found %d (%s)", path, len(inputs), strings.Join(inputs, ", "))
	}
	bb.input = inputs[0]

	producer := map[string]int{}
	for i, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			producer[o] = i
		}
	}
	for _, l := range layers {
		if _, ok := producer[l]; !ok {
			return nil, fmt.Errorf("backbone %s has no tensor named %q (pick intermediate tensors produced by its nodes, e.g. %s)",
				path, l, exampleTensors(g))
		}
	}

	// Backward reachability from the layers: the classifier head and anything
	// after the deepest layer are dropped, so they cost nothing at run time
	// and their fixed 224x224 shapes cannot clash with other input sizes.
	need := map[string]bool{}
	keep := make([]bool, len(g.GetNode()))
	stack := append([]string(nil), layers...)
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if need[t] {
			continue
		}
		need[t] = true
		if i, ok := producer[t]; ok && !keep[i] {
			keep[i] = true
			for _, in := range g.GetNode()[i].GetInput() {
				if in != "" {
					stack = append(stack, in)
				}
			}
		}
	}
	for i, n := range g.GetNode() {
		if keep[i] {
			bb.nodes = append(bb.nodes, n)
		}
	}
	for _, t := range g.GetInitializer() {
		if need[t.GetName()] {
			bb.inits = append(bb.inits, t)
		}
	}
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() != "" && o.GetDomain() != "ai.onnx" {
			bb.opsets = append(bb.opsets, o)
		}
	}

	for _, l := range layers {
		n := g.GetNode()[producer[l]]
		q, err := quantOf(n, l, initByName)
		if err != nil {
			return nil, fmt.Errorf("backbone %s: %w", path, err)
		}
		bb.dequant = append(bb.dequant, q)
	}
	return bb, nil
}

// quantOf finds the scale and zero point of tensor t produced by node n, or
// returns the zero value when n produces a float tensor.
func quantOf(n *onnx.NodeProto, t string, inits map[string]*onnx.TensorProto) (quantParams, error) {
	op := n.GetOpType()
	if pos, ok := outputQuantInputs[op]; ok && len(n.GetInput()) > pos[1] && n.GetOutput()[0] == t {
		return quantParams{scale: n.GetInput()[pos[0]], zeroPoint: n.GetInput()[pos[1]]}, nil
	}
	// The quantization tool's naming convention: X_quantized, X_scale, X_zero_point.
	if base, ok := strings.CutSuffix(t, "_quantized"); ok {
		if inits[base+"_scale"] != nil && inits[base+"_zero_point"] != nil {
			return quantParams{scale: base + "_scale", zeroPoint: base + "_zero_point"}, nil
		}
	}
	if strings.HasPrefix(op, "QLinear") || op == "QuantizeLinear" {
		return quantParams{}, fmt.Errorf("tensor %q comes from %s but its scale/zero point could not be found", t, op)
	}
	return quantParams{}, nil
}

// exampleTensors lists a few node outputs to put in an error message.
func exampleTensors(g *onnx.GraphProto) string {
	var names []string
	for _, n := range g.GetNode() {
		if len(n.GetOutput()) > 0 && (strings.HasPrefix(n.GetOpType(), "QLinearAdd") || n.GetOpType() == "Add") {
			names = append(names, n.GetOutput()[0])
		}
		if len(names) == 6 {
			break
		}
	}
	if len(names) == 0 {
		for _, n := range g.GetNode()[:min(6, len(g.GetNode()))] {
			names = append(names, n.GetOutput()...)
		}
	}
	return strings.Join(names, ", ")
}

// imagenetMean and imagenetStd are torchvision's normalisation, applied
// inside the graph so the model takes RGB in [0,1] like anomalib exports.
var (
	imagenetMean = []float32{0.485, 0.456, 0.406}
	imagenetStd  = []float32{0.229, 0.224, 0.225}
)

// addBackbone appends normalisation, the pruned backbone and dequantisation
// to b, reading from graph input "input", and returns the float feature
// tensor names, one per layer.
func (bb *backbone) addBackbone(b *graphBuilder, normalize bool) []string {
	in := "input"
	if normalize {
		mean := b.floatInit("imagenet_mean", []int64{1, 3, 1, 1}, imagenetMean)
		std := b.floatInit("imagenet_std", []int64{1, 3, 1, 1}, imagenetStd)
		in = b.node("Div", []string{b.node("Sub", []string{"input", mean}), std})
	}
	for _, n := range bb.nodes {
		n = proto.Clone(n).(*onnx.NodeProto)
		for i, x := range n.Input {
			if x == bb.input {
				n.Input[i] = in
			}
		}
		b.nodes = append(b.nodes, n)
	}
	b.inits = append(b.inits, bb.inits...)
	feats := make([]string, len(bb.layers))
	for i, l := range bb.layers {
		q := bb.dequant[i]
		if q.scale == "" {
			feats[i] = l
			continue
		}
		feats[i] = b.node("DequantizeLinear", []string{l, q.scale, q.zeroPoint})
	}
	return feats
}

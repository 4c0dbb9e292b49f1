package opcua

import (
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// NamespaceURI is the URI of the server's own namespace (index 1).
const NamespaceURI = "urn:segad-edge:machine-vision"

// Variable keys: the string node IDs in namespace 1 (ns=1;s=<key>).
const (
	KeyVision          = "Vision"
	KeySystemState     = "Vision.SystemState"
	KeySystemStateCode = "Vision.SystemStateCode"
	KeyHealth          = "Vision.Health"
	KeyOnline          = "Vision.Health.Online"
	KeyReady           = "Vision.Health.Ready"
	KeyBusy            = "Vision.Health.Busy"
	KeyHealthError     = "Vision.Health.Error"
	KeyHealthBundle    = "Vision.Health.Bundle"
	KeyCounters        = "Vision.Counters"
	KeyParts           = "Vision.Counters.Parts"
	KeyPasses          = "Vision.Counters.Passes"
	KeyFails           = "Vision.Counters.Fails"
	KeyErrors          = "Vision.Counters.Errors"
	KeyResult          = "Vision.Result"
	KeyResultCounter   = "Vision.Result.ResultCounter"
	KeyResultID        = "Vision.Result.ResultId"
	KeyPartID          = "Vision.Result.PartId"
	KeyResultState     = "Vision.Result.ResultState"
	KeyVerdict         = "Vision.Result.Verdict"
	KeyResultCode      = "Vision.Result.ResultCode"
	KeyReasonCode      = "Vision.Result.ReasonCode"
	KeyReasonNumber    = "Vision.Result.ReasonNumber"
	KeyReason          = "Vision.Result.Reason"
	KeyScore           = "Vision.Result.Score"
	KeyHasScore        = "Vision.Result.HasScore"
	KeyThreshold       = "Vision.Result.Threshold"
	KeyBundle          = "Vision.Result.Bundle"
	KeyDecidedAt       = "Vision.Result.DecidedAt"
	KeySeq             = "Vision.Result.Seq"
	KeySource          = "Vision.Result.Source"
	KeyStation         = "Vision.Result.Station"
)

// nodeDef is one node of the server's own namespace.
type nodeDef struct {
	key      string
	browse   string
	desc     string
	class    ua.NodeClass
	dataType uint32 // ns=0 data type (variables)
	typeDef  uint32 // ns=0 type definition
	parent   string // "" = the Objects folder (ns=0;i=85)
	initial  any
}

// nodeDefs is the node tree in browse order. Browse names follow OPC 40100
// where it defines one (SystemState, ResultId, PartId, ResultState).
var nodeDefs = []nodeDef{
	{key: KeyVision, browse: "SegadVision", desc: "segad-edge inspection station (read-only, after OPC 40100 Machine Vision)", class: ua.NodeClassObject, typeDef: id.BaseObjectType},
	{key: KeySystemState, browse: "SystemState", desc: "Preoperational, Operational, Error or Halted (OPC 40100 VisionStateMachine states)", class: ua.NodeClassVariable, dataType: id.String, parent: KeyVision, initial: StatePreoperational},
	{key: KeySystemStateCode, browse: "SystemStateCode", desc: "0 Preoperational, 1 Operational, 2 Error, 3 Halted", class: ua.NodeClassVariable, dataType: id.UInt16, parent: KeyVision, initial: uint16(0)},

	{key: KeyHealth, browse: "Health", desc: "the line as /readyz sees it", class: ua.NodeClassObject, typeDef: id.BaseObjectType, parent: KeyVision},
	{key: KeyOnline, browse: "Online", desc: "the daemon runs", class: ua.NodeClassVariable, dataType: id.Boolean, parent: KeyHealth, initial: false},
	{key: KeyReady, browse: "Ready", desc: "warmed up and the source delivers", class: ua.NodeClassVariable, dataType: id.Boolean, parent: KeyHealth, initial: false},
	{key: KeyBusy, browse: "Busy", desc: "a frame is being inspected", class: ua.NodeClassVariable, dataType: id.Boolean, parent: KeyHealth, initial: false},
	{key: KeyHealthError, browse: "Error", desc: "why the line cannot inspect; empty when it can", class: ua.NodeClassVariable, dataType: id.String, parent: KeyHealth, initial: ""},
	{key: KeyHealthBundle, browse: "Bundle", desc: "the loaded model bundle", class: ua.NodeClassVariable, dataType: id.String, parent: KeyHealth, initial: ""},

	{key: KeyCounters, browse: "Counters", desc: "results since the server started", class: ua.NodeClassObject, typeDef: id.BaseObjectType, parent: KeyVision},
	{key: KeyParts, browse: "Parts", desc: "results published", class: ua.NodeClassVariable, dataType: id.UInt64, parent: KeyCounters, initial: uint64(0)},
	{key: KeyPasses, browse: "Passes", desc: "pass results", class: ua.NodeClassVariable, dataType: id.UInt64, parent: KeyCounters, initial: uint64(0)},
	{key: KeyFails, browse: "Fails", desc: "fail results", class: ua.NodeClassVariable, dataType: id.UInt64, parent: KeyCounters, initial: uint64(0)},
	{key: KeyErrors, browse: "Errors", desc: "error results (treat as rejects)", class: ua.NodeClassVariable, dataType: id.UInt64, parent: KeyCounters, initial: uint64(0)},

	{key: KeyResult, browse: "Result", desc: "the last result; all fields change together with ResultCounter", class: ua.NodeClassObject, typeDef: id.BaseObjectType, parent: KeyVision},
	{key: KeyResultCounter, browse: "ResultCounter", desc: "1 for the first result, +1 for each; a gap means results were not seen", class: ua.NodeClassVariable, dataType: id.UInt64, parent: KeyResult, initial: uint64(0)},
	{key: KeyResultID, browse: "ResultId", desc: "unique result ID (sorts by decision time)", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
	{key: KeyPartID, browse: "PartId", desc: "part ID from the trigger or PLC; empty when unknown", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
	{key: KeyResultState, browse: "ResultState", desc: "OPC 40100 ResultState: 1 OK (pass), 2 NOK (fail), 0 NotAvailable (error: not judged, treat as reject)", class: ua.NodeClassVariable, dataType: id.Int32, parent: KeyResult, initial: int32(0)},
	{key: KeyVerdict, browse: "Verdict", desc: "pass, fail or error", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
	{key: KeyResultCode, browse: "ResultCode", desc: "0 pass, 1 fail, 2 error (docs/plc.md)", class: ua.NodeClassVariable, dataType: id.UInt16, parent: KeyResult, initial: uint16(0)},
	{key: KeyReasonCode, browse: "ReasonCode", desc: "machine-readable reason code; empty for pass", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
	{key: KeyReasonNumber, browse: "ReasonNumber", desc: "reason code as a number (docs/plc.md); 65535 unknown", class: ua.NodeClassVariable, dataType: id.UInt16, parent: KeyResult, initial: uint16(0)},
	{key: KeyReason, browse: "Reason", desc: "reason in words", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
	{key: KeyScore, browse: "Score", desc: "the model's score; NaN when not computed (see HasScore)", class: ua.NodeClassVariable, dataType: id.Double, parent: KeyResult, initial: float64(0)},
	{key: KeyHasScore, browse: "HasScore", desc: "Score was computed", class: ua.NodeClassVariable, dataType: id.Boolean, parent: KeyResult, initial: false},
	{key: KeyThreshold, browse: "Threshold", desc: "the decision threshold the score was compared with", class: ua.NodeClassVariable, dataType: id.Double, parent: KeyResult, initial: float64(0)},
	{key: KeyBundle, browse: "Bundle", desc: "model bundle that decided", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
	{key: KeyDecidedAt, browse: "DecidedAt", desc: "decision time (UTC)", class: ua.NodeClassVariable, dataType: id.DateTime, parent: KeyResult, initial: time.Time{}},
	{key: KeySeq, browse: "Seq", desc: "the station's frame sequence number", class: ua.NodeClassVariable, dataType: id.UInt64, parent: KeyResult, initial: uint64(0)},
	{key: KeySource, browse: "Source", desc: "frame source", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
	{key: KeyStation, browse: "Station", desc: "inspection station", class: ua.NodeClassVariable, dataType: id.String, parent: KeyResult, initial: ""},
}

// Reference type IDs used in the tree.
const (
	refHasComponent      = id.HasComponent
	refOrganizes         = id.Organizes
	refHasTypeDefinition = id.HasTypeDefinition
)

// refParents is the reference type hierarchy Browse needs for
// IncludeSubtypes: each type's supertype.
var refParents = map[uint32]uint32{
	id.HierarchicalReferences:    id.References,
	id.NonHierarchicalReferences: id.References,
	id.HasChild:                  id.HierarchicalReferences,
	id.Organizes:                 id.HierarchicalReferences,
	id.Aggregates:                id.HasChild,
	id.HasComponent:              id.Aggregates,
	id.HasTypeDefinition:         id.NonHierarchicalReferences,
	id.HasProperty:               id.Aggregates,
	id.HasSubtype:                id.HasChild,
	id.HasOrderedComponent:       id.HasComponent,
	id.HasEventSource:            id.HierarchicalReferences,
	id.HasNotifier:               id.HasEventSource,
	id.HasModellingRule:          id.NonHierarchicalReferences,
	id.HasEncoding:               id.NonHierarchicalReferences,
	id.HasDescription:            id.NonHierarchicalReferences,
	id.GeneratesEvent:            id.NonHierarchicalReferences,
	id.AlwaysGeneratesEvent:      id.GeneratesEvent,
	id.HasInterface:              id.NonHierarchicalReferences,
	id.HasAddIn:                  id.HasComponent,
}

// refMatches reports whether ref is want or (with subtypes) one of its subtypes.
func refMatches(want *ua.NodeID, ref uint32, subtypes bool) bool {
	if want == nil || (want.Namespace() == 0 && want.IntID() == 0) {
		return true
	}
	if want.Namespace() != 0 {
		return false
	}
	w := want.IntID()
	for r := ref; ; {
		if r == w {
			return true
		}
		if !subtypes {
			return false
		}
		p, ok := refParents[r]
		if !ok {
			return false
		}
		r = p
	}
}

type vnode struct {
	def      nodeDef
	id       *ua.NodeID
	parent   *vnode
	children []*vnode
}

// space is the server's own namespace: a fixed tree whose variable values
// change under one lock, so that a Read or a notification never sees half
// of a result.
type space struct {
	idx   uint16
	nodes map[string]*vnode
	order []*vnode
	root  *vnode

	mu     sync.RWMutex
	values map[string]*ua.DataValue
}

func newSpace(idx uint16) *space {
	s := &space{idx: idx, nodes: map[string]*vnode{}, values: map[string]*ua.DataValue{}}
	now := time.Now()
	for _, d := range nodeDefs {
		n := &vnode{def: d, id: ua.NewStringNodeID(idx, d.key)}
		if d.parent != "" {
			n.parent = s.nodes[d.parent]
			n.parent.children = append(n.parent.children, n)
		} else {
			s.root = n
		}
		s.nodes[d.key] = n
		s.order = append(s.order, n)
		if d.class == ua.NodeClassVariable {
			s.values[d.key] = dataValue(d.initial, now)
		}
	}
	return s
}

func dataValue(v any, at time.Time) *ua.DataValue {
	return &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		Value:           ua.MustVariant(v),
		SourceTimestamp: at,
		ServerTimestamp: at,
	}
}

func badValue(code ua.StatusCode) *ua.DataValue {
	return &ua.DataValue{
		EncodingMask:    ua.DataValueStatusCode | ua.DataValueServerTimestamp,
		Status:          code,
		ServerTimestamp: time.Now(),
	}
}

// set changes variables under the lock and returns the new values.
func (s *space) set(at time.Time, kv map[string]any) map[string]*ua.DataValue {
	out := make(map[string]*ua.DataValue, len(kv))
	s.mu.Lock()
	for k, v := range kv {
		dv := dataValue(v, at)
		s.values[k] = dv
		out[k] = dv
	}
	s.mu.Unlock()
	return out
}

// value returns a variable's current value.
func (s *space) value(key string) *ua.DataValue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.values[key]
}

// lookup returns the node of an ID in this namespace.
func (s *space) lookup(nid *ua.NodeID) *vnode {
	if nid == nil || nid.Namespace() != s.idx || nid.Type() != ua.NodeIDTypeString {
		return nil
	}
	return s.nodes[nid.StringID()]
}

// attribute reads one attribute of one of this namespace's nodes.
func (s *space) attribute(n *vnode, attr ua.AttributeID) *ua.DataValue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.attributeLocked(n, attr)
}

// attributeLocked is attribute with s.mu held (for reading).
func (s *space) attributeLocked(n *vnode, attr ua.AttributeID) *ua.DataValue {
	now := time.Now()
	d := n.def
	switch attr {
	case ua.AttributeIDNodeID:
		return dataValue(n.id, now)
	case ua.AttributeIDNodeClass:
		return dataValue(int32(d.class), now)
	case ua.AttributeIDBrowseName:
		return dataValue(&ua.QualifiedName{NamespaceIndex: s.idx, Name: d.browse}, now)
	case ua.AttributeIDDisplayName:
		return dataValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: d.browse}, now)
	case ua.AttributeIDDescription:
		return dataValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: d.desc}, now)
	case ua.AttributeIDWriteMask, ua.AttributeIDUserWriteMask:
		return dataValue(uint32(0), now)
	}
	if d.class == ua.NodeClassObject {
		if attr == ua.AttributeIDEventNotifier {
			return dataValue(uint8(0), now)
		}
		return badValue(ua.StatusBadAttributeIDInvalid)
	}
	switch attr {
	case ua.AttributeIDValue:
		return s.values[d.key]
	case ua.AttributeIDDataType:
		return dataValue(ua.NewNumericNodeID(0, d.dataType), now)
	case ua.AttributeIDValueRank:
		return dataValue(int32(-1), now)
	case ua.AttributeIDArrayDimensions:
		return dataValue([]uint32{}, now)
	case ua.AttributeIDAccessLevel, ua.AttributeIDUserAccessLevel:
		return dataValue(uint8(ua.AccessLevelTypeCurrentRead), now)
	case ua.AttributeIDMinimumSamplingInterval:
		return dataValue(float64(0), now)
	case ua.AttributeIDHistorizing:
		return dataValue(false, now)
	}
	return badValue(ua.StatusBadAttributeIDInvalid)
}

// browse lists a node's references.
func (s *space) browse(n *vnode, bd *ua.BrowseDescription) *ua.BrowseResult {
	var refs []*ua.ReferenceDescription
	add := func(refType uint32, forward bool, target *ua.NodeID, browse *ua.QualifiedName, class ua.NodeClass, typeDef uint32) {
		if !refMatches(bd.ReferenceTypeID, refType, bd.IncludeSubtypes) {
			return
		}
		switch bd.BrowseDirection {
		case ua.BrowseDirectionForward:
			if !forward {
				return
			}
		case ua.BrowseDirectionInverse:
			if forward {
				return
			}
		}
		if bd.NodeClassMask != 0 && bd.NodeClassMask&uint32(class) == 0 {
			return
		}
		refs = append(refs, &ua.ReferenceDescription{
			ReferenceTypeID: ua.NewNumericNodeID(0, refType),
			IsForward:       forward,
			NodeID:          ua.NewExpandedNodeID(target, "", 0),
			BrowseName:      browse,
			DisplayName:     &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: browse.Name},
			NodeClass:       class,
			TypeDefinition:  ua.NewExpandedNodeID(ua.NewNumericNodeID(0, typeDef), "", 0),
		})
	}
	td := n.def.typeDef
	if n.def.class == ua.NodeClassVariable {
		td = id.BaseDataVariableType
	}
	if n.def.class == ua.NodeClassVariable {
		add(refHasTypeDefinition, true, ua.NewNumericNodeID(0, td), &ua.QualifiedName{Name: "BaseDataVariableType"}, ua.NodeClassVariableType, 0)
	} else {
		add(refHasTypeDefinition, true, ua.NewNumericNodeID(0, td), &ua.QualifiedName{Name: "BaseObjectType"}, ua.NodeClassObjectType, 0)
	}
	for _, c := range n.children {
		ctd := c.def.typeDef
		if c.def.class == ua.NodeClassVariable {
			ctd = id.BaseDataVariableType
		}
		add(refHasComponent, true, c.id, &ua.QualifiedName{NamespaceIndex: s.idx, Name: c.def.browse}, c.def.class, ctd)
	}
	if n.parent != nil {
		add(refHasComponent, false, n.parent.id, &ua.QualifiedName{NamespaceIndex: s.idx, Name: n.parent.def.browse}, ua.NodeClassObject, id.BaseObjectType)
	} else {
		add(refOrganizes, false, ua.NewNumericNodeID(0, id.ObjectsFolder), &ua.QualifiedName{Name: "Objects"}, ua.NodeClassObject, id.FolderType)
	}
	return &ua.BrowseResult{StatusCode: ua.StatusGood, References: refs}
}

// child finds a child by browse name (used by TranslateBrowsePaths).
func (s *space) child(n *vnode, name *ua.QualifiedName) *vnode {
	if name == nil {
		return nil
	}
	for _, c := range n.children {
		if c.def.browse == name.Name && name.NamespaceIndex == s.idx {
			return c
		}
	}
	return nil
}

// gopcuaNamespace registers the namespace URI with the gopcua server (so
// that Server_NamespaceArray lists it at index 1) and gives gopcua's own
// namespace-0 Browse a node to describe the Objects -> SegadVision
// reference with. It serves nothing itself: every service that touches
// namespace 1 is answered by this package's handlers.
type gopcuaNamespace struct {
	id   uint16
	root *server.Node
}

var _ server.NameSpace = (*gopcuaNamespace)(nil)

func (g *gopcuaNamespace) Name() string                        { return NamespaceURI }
func (g *gopcuaNamespace) AddNode(n *server.Node) *server.Node { return n }
func (g *gopcuaNamespace) Node(nid *ua.NodeID) *server.Node {
	if g.root != nil && nid != nil && nid.String() == g.root.ID().String() {
		return g.root
	}
	return nil
}
func (g *gopcuaNamespace) Objects() *server.Node { return nil }
func (g *gopcuaNamespace) Root() *server.Node    { return nil }
func (g *gopcuaNamespace) Browse(*ua.BrowseDescription) *ua.BrowseResult {
	return &ua.BrowseResult{StatusCode: ua.StatusBadNodeIDUnknown}
}
func (g *gopcuaNamespace) ID() uint16     { return g.id }
func (g *gopcuaNamespace) SetID(i uint16) { g.id = i }
func (g *gopcuaNamespace) Attribute(*ua.NodeID, ua.AttributeID) *ua.DataValue {
	return badValue(ua.StatusBadNodeIDUnknown)
}
func (g *gopcuaNamespace) SetAttribute(*ua.NodeID, ua.AttributeID, *ua.DataValue) ua.StatusCode {
	return ua.StatusBadNotWritable
}

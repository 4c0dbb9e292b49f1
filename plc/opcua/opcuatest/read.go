package opcuatest

import (
	"context"
	"fmt"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// ReadKeys reads the values of keys (namespace ns) in one Read request.
func ReadKeys(ctx context.Context, cl *opcua.Client, ns uint16, keys ...string) ([]any, error) {
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, k := range keys {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.NewStringNodeID(ns, k), AttributeID: ua.AttributeIDValue})
	}
	resp, err := cl.Read(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []any
	for i, r := range resp.Results {
		if r.Status != ua.StatusOK {
			return nil, fmt.Errorf("%s: %v", keys[i], r.Status)
		}
		out = append(out, r.Value.Value())
	}
	return out, nil
}

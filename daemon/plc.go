package daemon

import (
	"context"

	"github.com/segad-edge/segad-edge/plc"
)

// PLCTrigger is a PLC server's trigger (a rising edge): it asks the source
// for the freshest frame for partID, as an MQTT or HTTP trigger does. The
// result carries partID, which is how the PLC server matches it.
func (d *Daemon) PLCTrigger(_ context.Context, partID string) error { return d.Trigger(partID) }

// PLCStatus is the line as a PLC sees it: ready as /readyz says, busy while
// a frame is in flight, the reason when the line cannot inspect.
func (d *Daemon) PLCStatus() plc.Status {
	st := plc.Status{Online: true, Busy: d.inflight.Load() > 0}
	if m := d.insp.Model(); m != nil {
		st.Bundle = m.ForestHash
	}
	if why := d.notReady(); why != "" {
		st.Error = why
	} else {
		st.Ready = true
	}
	return st
}

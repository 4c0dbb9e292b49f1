package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/plc/modbus"
)

// newPLCCmd is `segad plc`: the PLC-facing servers' tools. `segad plc map`
// prints the Modbus register map a PLC programmer maps their tags to,
// for the word order, unit ID and part ID length the line uses.
func newPLCCmd() *cobra.Command {
	plcCmd := &cobra.Command{Use: "plc", Short: "PLC interfaces (Modbus TCP): print the register map"}
	def := modbus.Defaults()
	cfg := def
	var asJSON bool
	mapCmd := &cobra.Command{
		Use:   "map",
		Short: "Print the Modbus TCP register map (addresses, types, word order, codes); --json for machines",
		Long: `Print the Modbus TCP register map: every signal with its table (holding
register, input register, coil, discrete input), 0-based address and 1-based
reference, type, word order of 32-bit values, access and meaning, then the
numeric result, reason and error codes. Give the values of the line's
plc.modbus section (word order, unit ID, part ID registers) so the map is
the one the PLC will see. docs/plc.md explains the handshake.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Only the keys that shape the map are checked; listen and
			// allow do not matter here.
			c := def
			c.WordOrder, c.UnitID, c.PartIDRegisters = cfg.WordOrder, cfg.UnitID, cfg.PartIDRegisters
			if err := c.Validate(); err != nil {
				return fmt.Errorf("segad plc map: %w", err)
			}
			m := modbus.RegisterMap(c)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(m)
			}
			return m.WriteText(cmd.OutOrStdout())
		},
	}
	mapCmd.Flags().BoolVar(&asJSON, "json", false, "print the map as JSON")
	mapCmd.Flags().StringVar(&cfg.WordOrder, "word-order", def.WordOrder, "word order of 32-bit values: big (high word first) or little (plc.modbus.word_order)")
	mapCmd.Flags().IntVar(&cfg.UnitID, "unit-id", def.UnitID, "Modbus unit ID (plc.modbus.unit_id)")
	mapCmd.Flags().IntVar(&cfg.PartIDRegisters, "part-id-registers", def.PartIDRegisters, "registers per part ID string (plc.modbus.part_id_registers)")
	plcCmd.AddCommand(mapCmd)
	return plcCmd
}

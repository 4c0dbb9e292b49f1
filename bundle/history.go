package bundle

import "time"

// HistorySource records the training rows `segad fit --history` took from
// the line's results history: the labelled production results' recorded
// feature rows (no images).
type HistorySource struct {
	// Path is the history database: the SQLite file, or the PostgreSQL URL
	// without its password.
	Path string `json:"path"`
	// Since bounds the results read (decided at or after it); absent: all.
	Since *time.Time `json:"since,omitempty"`
	// Read is when the history was read.
	Read time.Time `json:"read"`
	// Oldest and Newest are the decision times of the rows used.
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
	// Good and Bad count the rows used per label, BadTypes the bad ones
	// per defect type ("bad" when the label named none).
	Good     int            `json:"good"`
	Bad      int            `json:"bad"`
	BadTypes map[string]int `json:"bad_types"`
	// NoFeatures counts labelled results left out because they were
	// recorded without a feature row.
	NoFeatures int `json:"no_features,omitempty"`
	// Bundles counts the rows per forest that scored them on the line.
	Bundles map[string]int `json:"bundles,omitempty"`
}

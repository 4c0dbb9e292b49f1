package mqtt

import "testing"

func TestParseTrigger(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"", "", false},
		{"  ", "", false},
		{`{"part_id":"A1"}`, "A1", false},
		{`{}`, "", false},
		{"P-123", "P-123", false},
		{`{"part_id":1}`, "", true},
		{`[1,2]`, "", true},
		{"\xff\xfe", "", true},
		{"a\tb", "", true},
	}
	for _, tc := range tests {
		got, err := ParseTrigger([]byte(tc.in))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseTrigger(%q) = %q, %v; want %q, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

package history

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/segad-edge/segad-edge/result"
)

// Row is one recorded result as queries return it.
type Row struct {
	ID         string         `json:"id"`
	Station    string         `json:"station"`
	Seq        uint64         `json:"seq"`
	PartID     string         `json:"part_id"`
	CapturedAt time.Time      `json:"captured_at,omitzero"`
	DecidedAt  time.Time      `json:"decided_at"`
	Verdict    result.Verdict `json:"verdict"`
	Warn       bool           `json:"warn"`
	// Score is null when the model did not score the part.
	Score      *float64 `json:"score"`
	Threshold  float64  `json:"threshold"`
	ReasonCode string   `json:"reason_code,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Bundle     string   `json:"bundle,omitempty"`
	// MapMax ({"detector": max}) and Features ([{"name","value"}]) are the
	// result's JSON forms (non-finite values as null).
	MapMax   json.RawMessage `json:"map_max,omitempty"`
	Features json.RawMessage `json:"features,omitempty"`
	// Contributions is Extra.Contributions as stored.
	Contributions json.RawMessage `json:"contributions,omitempty"`
	AuditPath     string          `json:"audit_path,omitempty"`
	Kind          Kind            `json:"kind"`
	// Label is the newest label (Note only from Get); nil when unlabelled.
	Label *Label `json:"label,omitempty"`
	// Labels is the label history, oldest first (Get only).
	Labels []Label `json:"labels,omitempty"`
}

// Result rebuilds the result.Result (without latency and source, which
// the history does not keep).
func (r *Row) Result() result.Result {
	out := result.Result{Schema: result.SchemaVersion, ID: r.ID, Station: r.Station, Seq: r.Seq, PartID: r.PartID,
		CapturedAt: r.CapturedAt, DecidedAt: r.DecidedAt, Verdict: r.Verdict, Score: r.Score, Threshold: r.Threshold,
		Warn: r.Warn, Bundle: r.Bundle, Reason: r.Reason, ReasonCode: r.ReasonCode}
	// Decode through the result's own JSON (null -> NaN).
	var wire struct {
		MapMax   json.RawMessage `json:"map_max,omitempty"`
		Features json.RawMessage `json:"features,omitempty"`
	}
	wire.MapMax, wire.Features = r.MapMax, r.Features
	if b, err := json.Marshal(wire); err == nil {
		var back result.Result
		if json.Unmarshal(b, &back) == nil {
			out.MapMax, out.Features = back.MapMax, back.Features
		}
	}
	return out
}

// Label is a person's judgement of one result: good or bad, with a defect
// type for bad parts and a note. Labelled results are training data and
// outlive retention.
type Label struct {
	// Label is "good" or "bad".
	Label string `json:"label"`
	// DefectType names the defect of a bad part: 1-64 letters, digits,
	// '_', '-', '.' (optional).
	DefectType string `json:"defect_type,omitempty"`
	// Note is free text: at most 1000 bytes of printable UTF-8 (optional).
	Note string `json:"note,omitempty"`
	// Who labelled it: 1-64 bytes of printable UTF-8 (required).
	Who string `json:"who"`
	// At is when; the store sets it.
	At time.Time `json:"at"`
}

// Label bounds.
const (
	MaxDefectType = 64
	MaxNote       = 1000
	MaxWho        = 64
)

// ParamError is a refused query or label parameter; an HTTP layer answers
// 400 with its text.
type ParamError struct {
	Param  string
	Value  string
	Reason string
}

func (e *ParamError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return fmt.Sprintf("%s=%q: %s", e.Param, v, e.Reason)
}

func paramErr(p, v, format string, a ...any) error {
	return &ParamError{Param: p, Value: v, Reason: fmt.Sprintf(format, a...)}
}

// ErrNotFound is returned (wrapped, with the ID) for an unknown result ID;
// an HTTP layer answers 404.
var ErrNotFound = errors.New("no such result")

// Validate checks a label and returns a *ParamError naming the field.
func (l *Label) Validate() error {
	switch l.Label {
	case "good", "bad":
	default:
		return paramErr("label", l.Label, "must be good or bad")
	}
	if l.DefectType != "" {
		if l.Label == "good" {
			return paramErr("defect_type", l.DefectType, "a good part has no defect type")
		}
		if len(l.DefectType) > MaxDefectType {
			return paramErr("defect_type", l.DefectType, "%d bytes, at most %d", len(l.DefectType), MaxDefectType)
		}
		for i, c := range []byte(l.DefectType) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return paramErr("defect_type", l.DefectType, "byte %d is %q: use letters, digits, '_', '-' and '.'", i, c)
			}
		}
	}
	if err := printable("note", l.Note, MaxNote); err != nil {
		return err
	}
	if strings.TrimSpace(l.Who) == "" {
		return paramErr("who", l.Who, "required: say who labels the result")
	}
	return printable("who", l.Who, MaxWho)
}

// printable checks a free-text field: bounded, valid UTF-8, no control
// characters (they break CSV, logs and terminals).
func printable(param, s string, max int) error {
	if len(s) > max {
		return paramErr(param, s, "%d bytes, at most %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return paramErr(param, s, "not valid UTF-8")
	}
	for i, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return paramErr(param, s, "character %U at byte %d is not printable", r, i)
		}
	}
	return nil
}

// Query selects results, newest first (by decided_at, then ID).
type Query struct {
	// Since (inclusive) and Until (exclusive) bound decided_at.
	Since, Until time.Time
	// Verdict is pass, fail or error; "" for any.
	Verdict result.Verdict
	// PartID and Station match exactly; "" for any.
	PartID  string
	Station string
	// Label is good, bad, labelled (either), unlabelled; "" for any.
	Label string
	// Kind is production (the default when ""), golden, shadow or all.
	Kind Kind
	// Limit is the page size, 1..MaxLimit; 0 means DefaultLimit.
	Limit int
	// Cursor continues after the last row of a previous page (Page.Next).
	Cursor string
}

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// KindAll selects every kind in a Query.
const KindAll Kind = "all"

// Page is one page of a query.
type Page struct {
	Results []Row `json:"results"`
	// Next is the cursor of the next page; "" on the last page.
	Next string `json:"next,omitempty"`
}

// Validate checks q and returns a *ParamError naming the parameter.
func (q *Query) Validate() error {
	if q.Limit < 0 || q.Limit > MaxLimit {
		return paramErr("limit", strconv.Itoa(q.Limit), "must be 1..%d", MaxLimit)
	}
	switch q.Verdict {
	case "", result.VerdictPass, result.VerdictFail, result.VerdictError:
	default:
		return paramErr("verdict", string(q.Verdict), "must be pass, fail or error")
	}
	switch q.Label {
	case "", "good", "bad", "labelled", "unlabelled":
	default:
		return paramErr("label", q.Label, "must be good, bad, labelled or unlabelled")
	}
	switch q.Kind {
	case "", KindProduction, KindGolden, KindShadow, KindAll:
	default:
		return paramErr("kind", string(q.Kind), "must be production, golden, shadow or all")
	}
	if err := printable("part_id", q.PartID, 128); err != nil {
		return err
	}
	if err := printable("station", q.Station, 64); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return paramErr("until", q.Until.Format(time.RFC3339), "must be after since (%s)", q.Since.Format(time.RFC3339))
	}
	if q.Cursor != "" {
		if _, _, err := decodeCursor(q.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// The cursor is the last row's (decided_at in microseconds, ID), base64url
// encoded: opaque to clients, exact for the keyset condition.
func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("1|" + strconv.FormatInt(t.UnixMicro(), 10) + "|" + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	bad := func(why string) error {
		return paramErr("cursor", c, "%s: pass the next value of the previous page unchanged", why)
	}
	if len(c) > 200 {
		return time.Time{}, "", bad("too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad("not a cursor")
	}
	parts := strings.Split(string(b), "|")
	if len(parts) != 3 || parts[0] != "1" {
		return time.Time{}, "", bad("not a cursor")
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || parts[2] == "" || len(parts[2]) > 64 || !utf8.ValidString(parts[2]) {
		return time.Time{}, "", bad("not a cursor")
	}
	return time.UnixMicro(us).UTC(), parts[2], nil
}

// queryParams are the parameters ParseQuery knows.
var queryParams = []string{"since", "until", "verdict", "part_id", "station", "label", "kind", "limit", "cursor"}

// ParseQuery reads a Query from URL parameters (GET /api/results, the CLI),
// refusing unknown or repeated parameters. since and until take RFC 3339
// times, dates (2006-01-02, UTC) or an age before now (90m, 24h, 7d).
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	var q Query
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		known := false
		for _, p := range queryParams {
			known = known || p == k
		}
		if !known {
			return q, paramErr(k, v.Get(k), "unknown parameter (known: %s)", strings.Join(queryParams, ", "))
		}
		if len(v[k]) > 1 {
			return q, paramErr(k, v.Get(k), "given %d times", len(v[k]))
		}
	}
	var err error
	if s := v.Get("since"); s != "" {
		if q.Since, err = ParseTime(s, now); err != nil {
			return q, paramErr("since", s, "%v", err)
		}
	}
	if s := v.Get("until"); s != "" {
		if q.Until, err = ParseTime(s, now); err != nil {
			return q, paramErr("until", s, "%v", err)
		}
	}
	q.Verdict = result.Verdict(v.Get("verdict"))
	q.PartID, q.Station, q.Label, q.Kind, q.Cursor = v.Get("part_id"), v.Get("station"), v.Get("label"), Kind(v.Get("kind")), v.Get("cursor")
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, paramErr("limit", s, "must be a whole number 1..%d", MaxLimit)
		}
		q.Limit = n
	}
	return q, q.Validate()
}

// ParseTime reads an RFC 3339 time, a date (UTC), or an age before now:
// a Go duration (90m, 36h) or whole days (7d).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 && n <= 100000 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("not a time: use RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or an age (90m, 24h, 7d)")
}

const rowCols = `id, station, seq, part_id, captured_at, decided_at, verdict, warn, score, threshold, reason_code,
 reason, bundle, map_max, features, contributions, audit_path, kind, label, defect_type, labelled_by, labelled_at`

func scanRow(sc interface{ Scan(...any) error }) (Row, error) {
	var r Row
	var seq int64
	var score sql.NullFloat64
	var mapMax, features, contrib, audit, label, defect, by sql.NullString
	var labelledAt time.Time
	var verdict, kind string
	if err := sc.Scan(&r.ID, &r.Station, &seq, &r.PartID, timeCol{&r.CapturedAt}, timeCol{&r.DecidedAt}, &verdict,
		&r.Warn, &score, &r.Threshold, &r.ReasonCode, &r.Reason, &r.Bundle, &mapMax, &features, &contrib, &audit,
		&kind, &label, &defect, &by, timeCol{&labelledAt}); err != nil {
		return r, err
	}
	r.Seq, r.Verdict, r.Kind, r.AuditPath = uint64(seq), result.Verdict(verdict), Kind(kind), audit.String
	if score.Valid {
		v := score.Float64
		r.Score = &v
	}
	if mapMax.Valid {
		r.MapMax = json.RawMessage(mapMax.String)
	}
	if features.Valid {
		r.Features = json.RawMessage(features.String)
	}
	if contrib.Valid {
		r.Contributions = json.RawMessage(contrib.String)
	}
	if label.Valid {
		r.Label = &Label{Label: label.String, DefectType: defect.String, Who: by.String, At: labelledAt}
	}
	return r, nil
}

// Query returns one page of results matching q, newest first. Pages are
// keyset-paginated on (decided_at, id): results inserted while a client
// pages are either newer than its first page (not shown) or found in
// order; none is skipped or repeated.
func (s *Store) Query(ctx context.Context, q Query) (Page, error) {
	if err := q.Validate(); err != nil {
		return Page{}, err
	}
	db, err := s.current()
	if err != nil {
		return Page{}, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if !q.Since.IsZero() {
		add("decided_at >= ?", db.t(q.Since))
	}
	if !q.Until.IsZero() {
		add("decided_at < ?", db.t(q.Until))
	}
	if q.Verdict != "" {
		add("verdict = ?", string(q.Verdict))
	}
	if q.PartID != "" {
		add("part_id = ?", q.PartID)
	}
	if q.Station != "" {
		add("station = ?", q.Station)
	}
	switch q.Label {
	case "good", "bad":
		add("label = ?", q.Label)
	case "labelled":
		add("label IS NOT NULL")
	case "unlabelled":
		add("label IS NULL")
	}
	switch q.Kind {
	case "":
		add("kind = ?", string(KindProduction))
	case KindAll:
	default:
		add("kind = ?", string(q.Kind))
	}
	if q.Cursor != "" {
		t, id, _ := decodeCursor(q.Cursor)
		add("(decided_at < ? OR (decided_at = ? AND id < ?))", db.t(t), db.t(t), id)
	}
	sqlText := `SELECT ` + rowCols + ` FROM results`
	if len(where) > 0 {
		sqlText += ` WHERE ` + strings.Join(where, " AND ")
	}
	sqlText += ` ORDER BY decided_at DESC, id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := db.r.QueryContext(ctx, db.q(sqlText), args...)
	if err != nil {
		return Page{}, fmt.Errorf("history: query %s: %w", db.target, err)
	}
	defer rows.Close()
	page := Page{Results: make([]Row, 0, min(limit, 64))}
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return Page{}, fmt.Errorf("history: query %s: %w", db.target, err)
		}
		page.Results = append(page.Results, r)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("history: query %s: %w", db.target, err)
	}
	if len(page.Results) > limit {
		page.Results = page.Results[:limit]
		last := page.Results[limit-1]
		page.Next = encodeCursor(last.DecidedAt, last.ID)
	}
	return page, nil
}

// Get returns one result with its label history.
func (s *Store) Get(ctx context.Context, id string) (Row, error) {
	if err := validID(id); err != nil {
		return Row{}, err
	}
	db, err := s.current()
	if err != nil {
		return Row{}, err
	}
	r, err := scanRow(db.r.QueryRowContext(ctx, db.q(`SELECT `+rowCols+` FROM results WHERE id = ? LIMIT 1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Row{}, fmt.Errorf("history: result %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Row{}, fmt.Errorf("history: get %s from %s: %w", id, db.target, err)
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT label, defect_type, note, who, labelled_at FROM labels WHERE result_id = ? ORDER BY seq`), id)
	if err != nil {
		return Row{}, fmt.Errorf("history: labels of %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var l Label
		if err := rows.Scan(&l.Label, &l.DefectType, &l.Note, &l.Who, timeCol{&l.At}); err != nil {
			return Row{}, fmt.Errorf("history: labels of %s: %w", id, err)
		}
		r.Labels = append(r.Labels, l)
	}
	if err := rows.Err(); err != nil {
		return Row{}, fmt.Errorf("history: labels of %s: %w", id, err)
	}
	if n := len(r.Labels); n > 0 {
		l := r.Labels[n-1]
		r.Label = &l
	}
	return r, nil
}

func validID(id string) error {
	if id == "" || len(id) > 64 {
		return paramErr("id", id, "a result ID is 1-64 characters")
	}
	return printable("id", id, 64)
}

// Label records a label for result id (newest wins; earlier ones stay in
// the history) and returns it with the store's time. A result still in the
// writer's queue is flushed first.
func (s *Store) Label(ctx context.Context, id string, l Label) (Label, error) {
	if s.cfg.ReadOnly {
		return Label{}, ErrReadOnly
	}
	if err := validID(id); err != nil {
		return Label{}, err
	}
	if err := l.Validate(); err != nil {
		return Label{}, err
	}
	db, err := s.current()
	if err != nil {
		return Label{}, err
	}
	l.At = time.Now().UTC().Truncate(time.Microsecond)
	err = db.label(ctx, id, l)
	if errors.Is(err, ErrNotFound) {
		if ferr := s.Flush(ctx); ferr == nil {
			err = db.label(ctx, id, l)
		}
	}
	if err != nil {
		return Label{}, err
	}
	return l, nil
}

func (d *database) label(ctx context.Context, id string, l Label) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("history: label %s: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	res, err := tx.ExecContext(ctx, d.q(`UPDATE results SET label = ?, defect_type = ?, labelled_by = ?, labelled_at = ? WHERE id = ?`),
		l.Label, nullString(l.DefectType), l.Who, d.t(l.At), id)
	if err != nil {
		return fmt.Errorf("history: label %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("history: label %s: %w", id, ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO labels (result_id, label, defect_type, note, who, labelled_at) VALUES (?, ?, ?, ?, ?, ?)`),
		id, l.Label, l.DefectType, l.Note, l.Who, d.t(l.At)); err != nil {
		return fmt.Errorf("history: label %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history: label %s: %w", id, err)
	}
	return nil
}

// IsLabelled reports whether result id carries a label. The audit store's
// pruner asks it before deleting an image: images of labelled results are
// training data and are kept. An unknown ID is not labelled.
func (s *Store) IsLabelled(ctx context.Context, id string) (bool, error) {
	db, err := s.current()
	if err != nil {
		return false, err
	}
	var n int
	err = db.r.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM results WHERE id = ? AND label IS NOT NULL`), id).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("history: is %s labelled: %w", id, err)
	}
	return n > 0, nil
}

// Export formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// csvHeader is the CSV export's first line.
var csvHeader = []string{"id", "station", "seq", "part_id", "captured_at", "decided_at", "verdict", "warn", "score",
	"threshold", "reason_code", "reason", "bundle", "kind", "label", "defect_type", "labelled_by", "labelled_at",
	"audit_path", "map_max", "features", "contributions"}

// Export writes every result matching q (Limit and Cursor are ignored) to
// w as CSV (with a header) or JSON lines, newest first, page by page so
// memory stays bounded and no read transaction stays open for long. It
// returns how many results it wrote.
func (s *Store) Export(ctx context.Context, q Query, format string, w io.Writer) (int, error) {
	if format != FormatCSV && format != FormatJSONL {
		return 0, paramErr("format", format, "must be csv or jsonl")
	}
	q.Limit, q.Cursor = MaxLimit, ""
	var cw *csv.Writer
	if format == FormatCSV {
		cw = csv.NewWriter(w)
		if err := cw.Write(csvHeader); err != nil {
			return 0, err
		}
	}
	enc := json.NewEncoder(w)
	n := 0
	for {
		page, err := s.Query(ctx, q)
		if err != nil {
			return n, err
		}
		for i := range page.Results {
			r := &page.Results[i]
			if cw != nil {
				err = cw.Write(csvRecord(r))
			} else {
				err = enc.Encode(r)
			}
			if err != nil {
				return n, fmt.Errorf("history: export: %w", err)
			}
			n++
		}
		if cw != nil {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return n, fmt.Errorf("history: export: %w", err)
			}
		}
		if page.Next == "" {
			return n, nil
		}
		q.Cursor = page.Next
	}
}

func csvRecord(r *Row) []string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	score := ""
	if r.Score != nil {
		score = strconv.FormatFloat(*r.Score, 'g', -1, 64)
	}
	var label, defect, by, at string
	if r.Label != nil {
		label, defect, by, at = r.Label.Label, r.Label.DefectType, r.Label.Who, ts(r.Label.At)
	}
	return []string{r.ID, cell(r.Station), strconv.FormatUint(r.Seq, 10), cell(r.PartID), ts(r.CapturedAt),
		ts(r.DecidedAt), string(r.Verdict), strconv.FormatBool(r.Warn), score,
		strconv.FormatFloat(r.Threshold, 'g', -1, 64), cell(r.ReasonCode), cell(r.Reason), cell(r.Bundle),
		string(r.Kind), label, defect, cell(by), at, cell(r.AuditPath), string(r.MapMax), string(r.Features),
		string(r.Contributions)}
}

// cell defuses spreadsheet formulas: a text cell starting with = + - @ or
// a control character is prefixed with a quote, so a hostile part ID cannot
// run anything when an engineer opens the export.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

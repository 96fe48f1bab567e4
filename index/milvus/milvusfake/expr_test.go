package milvusfake

import (
	"strconv"
	"strings"
	"testing"

	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
)

func testFields() map[string]*schemapb.FieldSchema {
	fields := map[string]*schemapb.FieldSchema{}
	for name, dataType := range map[string]schemapb.DataType{
		"id": schemapb.DataType_VarChar, "camera": schemapb.DataType_VarChar, "time": schemapb.DataType_Int64,
		"box": schemapb.DataType_Int32, "score": schemapb.DataType_Double, "ok": schemapb.DataType_Bool,
		"vector": schemapb.DataType_FloatVector,
	} {
		fields[name] = &schemapb.FieldSchema{Name: name, DataType: dataType}
	}
	return fields
}

func TestParseExpr(t *testing.T) {
	row := map[string]any{"id": "a-1", "camera": `cam "1"`, "time": int64(100), "box": int64(-5), "score": 0.5, "ok": true}
	cases := []struct {
		expr string
		want bool
	}{
		{"", true},
		{`camera == "cam \"1\""`, true},
		{`camera == 'cam "1"'`, true},
		{`camera != "cam \"1\""`, false},
		{`camera in ["x", "cam \"1\""]`, true},
		{`camera not in ["x", "cam \"1\""]`, false},
		{`camera in []`, false},
		{`camera not in []`, true},
		{`time >= 100 and time <= 100`, true},
		{`time > 100 || time < 100`, false},
		{`time > 99 && time < 101`, true},
		{`100 <= time`, true},
		{`101 <= time`, false},
		{`time < 100.5`, true},
		{`box == -5`, true},
		{`box in [-5, 3]`, true},
		{`score >= 0.5 and score < 1`, true},
		{`ok == true`, true},
		{`not (time == 100)`, false},
		{`!(camera == "x") and (time == 1 or time == 100)`, true},
		{`id in ["a-1"] and camera not in ["cam \"2\""] and time >= 0`, true},
	}
	for _, c := range cases {
		keep, err := parseExpr(c.expr, testFields())
		if err != nil {
			t.Errorf("parseExpr(%q): %v", c.expr, err)
			continue
		}
		if got := keep(row); got != c.want {
			t.Errorf("%q = %v, want %v", c.expr, got, c.want)
		}
	}
}

func TestParseExprErrors(t *testing.T) {
	for _, expr := range []string{
		`missing == 1`,       // unknown field
		`camera == 1`,        // type mismatch, as Milvus's planner reports
		`time == "100"`,      // type mismatch
		`vector == 1`,        // vector fields cannot be filtered
		`camera in ["a"`,     // unterminated list
		`camera == "a`,       // unterminated string
		`camera in {cams}`,   // templates are not emulated
		`time > 1 and`,       // dangling operator
		`camera like "a%"`,   // outside the subset
		`time + 1 > 2`,       // arithmetic is outside the subset
		`(time > 1`,          // unbalanced parenthesis
		`time > 1 time > 2`,  // missing operator
		`json["a"] == 1`,     // JSON paths are outside the subset
		`camera == "a\q"`,    // bad escape
		"camera == \"a\nb\"", // raw newline in a literal
	} {
		if _, err := parseExpr(expr, testFields()); err == nil {
			t.Errorf("parseExpr(%q) succeeded", expr)
		}
	}
}

// TestQuotedRoundTrip checks that Go-quoted literals, which the backend emits, decode to the
// original string, including the characters that could break out of a literal.
func TestQuotedRoundTrip(t *testing.T) {
	for _, value := range []string{"plain", `with "quotes"`, `back\slash`, `it's`, "new\nline\ttab", `] or id != "`, "ünïcode", "\x00\x7f"} {
		keep, err := parseExpr("camera == "+strconv.Quote(value), testFields())
		if err != nil {
			t.Errorf("quoted %q: %v", value, err)
			continue
		}
		if !keep(map[string]any{"camera": value}) || keep(map[string]any{"camera": value + "x"}) {
			t.Errorf("quoted %q does not match exactly itself", value)
		}
	}
}

func TestLargeInList(t *testing.T) {
	ids := make([]string, 5000)
	for i := range ids {
		ids[i] = strconv.Quote("id-" + strconv.Itoa(i))
	}
	keep, err := parseExpr("id in ["+strings.Join(ids, ",")+"]", testFields())
	if err != nil {
		t.Fatal(err)
	}
	if !keep(map[string]any{"id": "id-4999"}) || keep(map[string]any{"id": "id-5000"}) {
		t.Error("membership in a large list is wrong")
	}
}

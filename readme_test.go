package ratchet_test

// README.md's code must work as shown. The rule for its ```go blocks:
//
//	Every ```go block is a complete Go file of package main: it starts with
//	"package main", has its imports and a func main, is gofmt-formatted, and
//	builds and passes go vet on its own.
//
// A user can paste any block into a main.go and run it. Code that only
// illustrates (a protocol exchange, a shell session) goes in a block of its
// own language (```js, ```sh, ```php, or a bare ```), which is not built.
//
// The blocks are built in a temporary module that requires this one from
// this tree (a replace directive), with this go.mod's requirements and
// go.sum: they see exactly this code and these dependency versions.

import (
	"bufio"
	"bytes"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// codeBlock is one fenced block of a Markdown file.
type codeBlock struct {
	lang string
	line int // of the opening fence
	code string
}

// fencedBlocks returns the fenced code blocks of a Markdown file.
func fencedBlocks(t *testing.T, path string) []codeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []codeBlock
	var cur *codeBlock
	var code strings.Builder
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		fence := strings.HasPrefix(strings.TrimSpace(line), "```")
		switch {
		case cur == nil && fence:
			cur = &codeBlock{lang: strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "```")), line: n}
			code.Reset()
		case cur != nil && fence:
			cur.code = code.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			code.WriteString(line + "\n")
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: code block never closed", path, cur.line)
	}
	return blocks
}

func TestReadmeGoBlocksBuild(t *testing.T) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// A module of its own that requires this one from this tree, with this
	// module's requirements and checksums.
	mod := t.TempDir()
	goMod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goMod = regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(goMod, []byte("module readme"))
	goMod = fmt.Appendf(goMod, "\nrequire github.com/ratchetgo/ratchet v0.0.0\n\nreplace github.com/ratchetgo/ratchet => %s\n", root)
	goSum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mod, "go.mod"), goMod)
	writeFile(t, filepath.Join(mod, "go.sum"), goSum)

	goBlocks, built := 0, 0
	for _, b := range fencedBlocks(t, "README.md") {
		if b.lang != "go" {
			continue
		}
		goBlocks++
		where := fmt.Sprintf("README.md:%d", b.line)
		if !strings.HasPrefix(b.code, "package main\n") {
			t.Errorf("%s: a ```go block must be a complete file starting with \"package main\" (the rule is at the top of readme_test.go)", where)
			continue
		}
		if formatted, err := format.Source([]byte(b.code)); err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		} else if !bytes.Equal(formatted, []byte(b.code)) {
			t.Errorf("%s: not gofmt-formatted; gofmt gives:\n%s", where, formatted)
		}
		// A package per block, named after the block's line for the error
		// messages.
		writeFile(t, filepath.Join(mod, fmt.Sprintf("line%d", b.line), "main.go"), []byte(b.code))
		built++
	}
	if goBlocks == 0 {
		t.Fatal("README.md has no ```go block: is this the right file?")
	}
	if built == 0 {
		return
	}
	// go build compiles them (a main package without func main fails
	// here), go vet checks them.
	for _, verb := range []string{"build", "vet"} {
		cmd := exec.Command("go", verb, "./...")
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go %s: %v\n%s", verb, err, readmeLines(out))
		}
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readmeLines rewrites "line91/main.go:3:2" in the go command's output to
// "README.md block at line 91, line 3:2", so a failure points at the README.
func readmeLines(out []byte) []byte {
	return regexp.MustCompile(`(?:\./)?line(\d+)/main\.go:`).ReplaceAll(out, []byte("README.md block at line $1, line "))
}

// Relative links of the Markdown files point at files that exist; the
// Markdown of npm packages installed by npm ci (node_modules) is not ours.
func TestMarkdownLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules"):
			return filepath.SkipDir // not ours
		case !d.IsDir() && strings.HasSuffix(path, ".md"):
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, md := range files {
		text, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(text), "\n") {
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target, _, _ := strings.Cut(m[1], "#")
				if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(md), target)); err != nil {
					t.Errorf("%s:%d: link to %s: %v", md, i+1, m[1], err)
				}
			}
		}
	}
}

// Command deploycheck checks Ledgerline's container packaging with the same libraries Docker
// uses, so the tests need no Docker engine.
//
//	deploycheck compose [-project-dir DIR] [-env KEY=VALUE]... [FILE]...
//	deploycheck context [DIR]
//
// compose loads Compose files the way `docker compose config` does and prints the resolved
// project as JSON. It uses github.com/compose-spec/compose-go/v2, the loader inside Docker
// Compose v2: the files are validated against the Compose Specification JSON schema embedded in
// that module (schema/compose-spec.json), interpolated, normalised and checked for consistency
// (unknown services in depends_on, undefined volumes and networks, dependency cycles).
// Interpolation sees only the -env variables (not the caller's environment, not a .env file), so
// the output is the same on every machine: ${VAR:-default} takes its default.
//
// context prints, as a JSON array of slash-separated paths, the files of DIR (default ".") that
// a `docker build DIR` would send as its build context after applying DIR/.dockerignore, using
// github.com/moby/patternmatcher, the matcher Docker and BuildKit use for .dockerignore.
//
// Any failure exits non-zero with the reason on stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/graph"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: deploycheck compose [-project-dir DIR] [-env KEY=VALUE]... [FILE]... | deploycheck context [DIR]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "compose":
		err = composeConfig(os.Args[2:])
	case "context":
		err = buildContext(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want compose or context)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploycheck %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, ",") }

func (e *envFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("-env wants KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

func composeConfig(args []string) error {
	flags := flag.NewFlagSet("compose", flag.ContinueOnError)
	var env envFlags
	projectDir := flags.String("project-dir", ".", "directory that relative paths in the files are resolved from")
	flags.Var(&env, "env", "KEY=VALUE used for interpolation (repeatable)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	files := flags.Args()
	if len(files) == 0 {
		files = []string{"docker-compose.yml"}
	}

	options, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(*projectDir),
		cli.WithEnv(env),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return fmt.Errorf("configuring the loader: %w", err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return fmt.Errorf("loading %s: %w", strings.Join(files, ", "), err)
	}
	if err := graph.CheckCycle(project); err != nil {
		return fmt.Errorf("depends_on: %w", err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding the project: %w", err)
	}
	fmt.Println(string(out))
	return nil
}

func buildContext(args []string) error {
	dir := "."
	if len(args) > 0 {
		dir = args[0]
	}
	var patterns []string
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	switch {
	case err == nil:
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading .dockerignore: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf("parsing .dockerignore: %w", err)
	}

	included := []string{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		excluded, err := matcher.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if d.IsDir() {
			// A directory can only be skipped whole when no "!" pattern could re-include
			// something inside it, as Docker's own context walk does.
			if excluded && !matcher.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		if !excluded {
			included = append(included, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(included)
	out, err := json.MarshalIndent(included, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

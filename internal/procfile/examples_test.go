package procfile

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gm2-init/gm2-init/internal/appspec"
)

// The example's three files describe the same apps, without a warning.
func TestExamplesAgree(t *testing.T) {
	needNode(t)
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "ecosystem"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, env := range []string{"", "production"} {
		var first []appspec.App
		for _, f := range []string{"ecosystem.config.js", "ecosystem.json", "ecosystem.yaml"} {
			apps, warnings, err := Load(f, template, Options{Env: env})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(warnings) > 0 {
				t.Errorf("%s: warnings %v", f, warnings)
			}
			if first == nil {
				first = apps
				if len(apps) != 2 || apps[0].Name != "api" || !apps[0].Instances.Relative || apps[1].ExecMode != appspec.Fork {
					t.Errorf("%s: %+v", f, apps)
				}
				continue
			}
			if !reflect.DeepEqual(apps, first) {
				t.Errorf("%s differs from ecosystem.config.js:\n%+v\n%+v", f, apps, first)
			}
		}
	}
}

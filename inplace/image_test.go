package inplace

import "testing"

func TestNormalizeImage(t *testing.T) {
	const digest = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	cases := map[string]struct {
		in, want string
		wantErr  bool
	}{
		"a short name gets the registry, library/ and latest": {in: "nginx", want: "docker.io/library/nginx:latest"},
		"a tag is kept":                        {in: "nginx:alpine", want: "docker.io/library/nginx:alpine"},
		"a user image gets the registry only":  {in: "bitnami/redis:7", want: "docker.io/bitnami/redis:7"},
		"a registry with a port is kept":       {in: "localhost:5000/app", want: "localhost:5000/app:latest"},
		"a registry with a port and a tag":     {in: "registry.local:5000/team/app:v2", want: "registry.local:5000/team/app:v2"},
		"a digest needs no tag":                {in: "nginx@" + digest, want: "docker.io/library/nginx@" + digest},
		"a digest wins over the tag beside it": {in: "nginx:1.27@" + digest, want: "docker.io/library/nginx@" + digest},
		"an already normal name is unchanged":  {in: "docker.io/library/nginx:latest", want: "docker.io/library/nginx:latest"},
		"upper case is not a valid repository": {in: "NGINX", wantErr: true},
		"an empty reference is an error":       {in: "", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := NormalizeImage(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NormalizeImage(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("NormalizeImage(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSameImage(t *testing.T) {
	const digest = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	cases := map[string]struct {
		a, b string
		want bool
	}{
		"short and long Docker Hub names":         {"nginx:alpine", "docker.io/library/nginx:alpine", true},
		"no tag means latest":                     {"nginx", "docker.io/library/nginx:latest", true},
		"index.docker.io is docker.io":            {"index.docker.io/library/nginx:1", "nginx:1", true},
		"different tags":                          {"nginx:alpine", "nginx:latest", false},
		"different registries":                    {"quay.io/nginx:1", "nginx:1", false},
		"tag and digest against the digest alone": {"nginx:1.27@" + digest, "nginx@" + digest, true},
		"a tag against a digest":                  {"nginx:1.27", "nginx@" + digest, false},
		"unparsable but verbatim equal":           {"Not Valid", "Not Valid", true},
		"unparsable and different":                {"Not Valid", "nginx", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := SameImage(tc.a, tc.b); got != tc.want {
				t.Errorf("SameImage(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := SameImage(tc.b, tc.a); got != tc.want {
				t.Errorf("SameImage(%q, %q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

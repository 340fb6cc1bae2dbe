module github.com/gm2-init/gm2-init

go 1.26.0

require (
	github.com/kelseyhightower/envconfig v1.2.0
	github.com/rs/zerolog v1.34.0
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sys v0.50.0
)

require (
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
)

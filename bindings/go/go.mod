module github.com/loradock/loradock/bindings/go

go 1.24

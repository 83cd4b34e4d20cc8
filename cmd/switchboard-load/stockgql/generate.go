package stockgql

//go:generate go tool gqlgen generate

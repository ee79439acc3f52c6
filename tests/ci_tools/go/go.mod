module example.com/ciapp

go 1.19

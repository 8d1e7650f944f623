module example.com/acme/service

go 1.22

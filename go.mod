module github.com/emsign/bot

go 1.26

settle()
keep()
return 1

if redis.call('EXISTS', META) == 1 then keep() end
return 1

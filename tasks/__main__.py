from tasks.worker import main

main()

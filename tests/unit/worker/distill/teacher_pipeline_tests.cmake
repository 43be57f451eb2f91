# mpirun runs of the teacher pipeline tests (tests/CMakeLists.txt: distill_mpi_test).
# Teacher pipeline (teacher_pipeline_test.cc): the split, the partial models
# and RemoteTeacher's checks on one rank; the stream itself with 1 student +
# 2 teacher stages (every transport against the colocated teacher) and with
# 2 students + 2 stages (each gets its own replies; different request counts).
distill_mpi_test(teacher_pipeline_np1 1
  "TeacherSplitTest.*:TeacherStageModelTest.*:TeacherPipelineTest.CreateChecks*")
distill_mpi_test(teacher_pipeline_np3 3 "TeacherPipelineTest.TwoStages*")
distill_mpi_test(teacher_pipeline_np4 4 "TeacherPipelineTest.TwoStudents*")
